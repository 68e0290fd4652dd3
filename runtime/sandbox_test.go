package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// delete kills the QEMU recorded in qemu.pid only while the pid is still
// that QEMU (same start time): after a monitor crash the pid may belong to
// another process, even one called qemu-something.
func TestKillQEMUChecksStartTime(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("skipping, no sleep binary: %v", err)
	}
	// A process whose comm says qemu, standing in for an unrelated one.
	fake := filepath.Join(t.TempDir(), "qemu-fake")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(fake, "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	d := Dir{Root: t.TempDir(), ID: "sb"}
	if err := os.MkdirAll(d.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	exited := func(cmd *exec.Cmd) bool {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}

	// A bare pid (no start time) is not trusted.
	other := start()
	os.WriteFile(d.QEMUPid(), []byte(strconv.Itoa(other.Process.Pid)), 0o600)
	killQEMU(d)
	// A pid whose start time is not the recorded one: reused.
	ref, err := RefOf(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	writeProcessRef(d.QEMUPid(), ProcessRef{Pid: ref.Pid, StartTime: ref.StartTime - 1})
	killQEMU(d)
	if exited(other) {
		t.Fatal("killQEMU killed a process that is not the recorded QEMU")
	}
	other.Process.Kill()

	// The recorded QEMU itself is killed.
	q := start()
	ref, err = RefOf(q.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	writeProcessRef(d.QEMUPid(), ref)
	killQEMU(d)
	if !exited(q) {
		t.Error("killQEMU left the recorded QEMU running")
	}
}
