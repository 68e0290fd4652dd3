package integration

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bytes that a hostile guest sends on the agent's channel, here written
// into QEMU's end of it (taken from QEMU with pidfd_getfd, so the monitor
// reads them exactly as it reads the guest's): a yamux ping, which the
// agent never sends, or a data header longer than any window (which made
// the monitor skip up to 4 GiB and wedged the session) ends the session
// and the VM, and the container is stopped.
func TestGuestProtocolViolationStopsVM(t *testing.T) {
	ping := make([]byte, 12)
	ping[1] = 2                             // type ping
	binary.BigEndian.PutUint16(ping[2:], 1) // SYN
	binary.BigEndian.PutUint32(ping[8:], 42)
	desync := make([]byte, 12)
	binary.BigEndian.PutUint32(desync[4:], 1) // data on the host's stream 1
	binary.BigEndian.PutUint32(desync[8:], 0xffffffff)
	t.Run("ping", func(t *testing.T) { hostileGuest(t, ping) })
	t.Run("desync", func(t *testing.T) { hostileGuest(t, desync) })
}

func hostileGuest(t *testing.T, frame []byte) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.create("hostile")
	e.mustRun("start", "hostile")
	qemu := findProcess(t, "qemu-system", e.root+"/hostile/")
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", qemu))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`socket,id=agent,fd=(\d+)`).FindSubmatch(cmdline)
	if m == nil {
		t.Skipf("skipping, qemu has no serial agent channel (vsock transport): %s", cmdline)
	}
	target, _ := strconv.Atoi(string(m[1]))
	pidfd, err := unix.PidfdOpen(qemu, 0)
	if err != nil {
		t.Skipf("skipping, pidfd_open: %v (needs Linux 5.6)", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, target, 0)
	if err != nil {
		t.Skipf("skipping, pidfd_getfd of qemu's agent socket: %v (needs Linux 5.6 and ptrace rights)", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, frame); err != nil {
		t.Fatal(err)
	}
	gone := false
	for t0 := time.Now(); time.Since(t0) < 15*time.Second; time.Sleep(50 * time.Millisecond) {
		if !alive(qemu) {
			gone = true
			break
		}
	}
	if !gone {
		t.Fatal("the vm outlived the guest's frame")
	}
	if !e.waitStatus("hostile", "stopped", 15*time.Second) {
		t.Error("the container is not stopped once its vm is")
	}
	b, _ := os.ReadFile(filepath.Join(e.root, "hostile", "monitor.log"))
	if !strings.Contains(string(b), "guest protocol violation") {
		t.Errorf("monitor log does not name the violation:\n%s", b)
	}
	e.mustRun("delete", "hostile")
}
