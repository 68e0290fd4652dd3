package runtime

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as the hog when started with OOMHogCommand.
func init() {
	if len(os.Args) == 3 && os.Args[1] == OOMHogCommand {
		maxMiB, _ := strconv.ParseUint(os.Args[2], 10, 64)
		if err := OOMHog(maxMiB); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(3)
	}
	// A bystander takes memory where it was born, then waits for stdin to
	// close: like QEMU, whose memory is charged to a cgroup it has left.
	if len(os.Args) == 3 && os.Args[1] == "bystander" {
		n, _ := strconv.Atoi(os.Args[2])
		b := make([]byte, n<<20)
		for i := range b {
			b[i] = 1
		}
		os.Stdout.Write([]byte{1})
		os.Stdin.Read(make([]byte, 1))
		os.Exit(int(b[0]) - 1)
	}
}

// oomKills reads the OOM kill count of a memory cgroup (v1's
// memory.oom_control, v2's memory.events).
func oomKills(t *testing.T, dir string, v2 bool) int {
	t.Helper()
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("%s has no oom_kill line: %q", file, b)
	return 0
}

// ReflectOOM's core: in a memory cgroup of its own, with a process using
// memory in it, the kernel counts one OOM kill, the victim is the hog, and
// the limit is back as it was.
func TestReflectOOMIn(t *testing.T) {
	requiresRoot(t)
	v2 := false
	hier := filepath.Join(cgroupRoot, "memory")
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		v2, hier = true, cgroupRoot
	}
	if _, err := os.Stat(hier); err != nil {
		t.Skipf("skipping: no memory cgroup hierarchy at %s", hier)
	}
	dir := filepath.Join(hier, fmt.Sprintf("runvirt-oomtest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
	}
	before, _ := os.ReadFile(filepath.Join(dir, limitFile))
	oomHogArgv = []string{os.Args[0], OOMHogCommand}
	place := func(pid int) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	// A member far larger than the cgroup's usage must not be the victim.
	by := exec.Command(os.Args[0], "bystander", "96")
	byIn, _ := by.StdinPipe()
	byOut, _ := by.StdoutPipe()
	if err := by.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { byIn.Close(); by.Process.Kill(); by.Wait() })
	if _, err := byOut.Read(make([]byte, 1)); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	if err := place(by.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := reflectOOMIn(dir, v2, place, slog.Default()); err != nil {
		t.Fatalf("reflectOOMIn: %v", err)
	}
	if err := by.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the bystander did not survive the reflected OOM: %v", err)
	}
	byIn.Close()
	if err := by.Wait(); err != nil {
		t.Errorf("the bystander: %v (killed by the OOM killer?)", err)
	}
	// The cgroup must be empty before Cleanup removes it.
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")); len(b) > 0 {
		t.Errorf("processes left in the test cgroup: %s", b)
	}
	if n := oomKills(t, dir, v2); n != 1 {
		t.Errorf("oom kills counted in the cgroup: %d, want 1", n)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, limitFile)); string(after) != string(before) {
		t.Errorf("%s after: %q, want it back at %q", limitFile, after, before)
	}
}
