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

// consoleFloodCapKiB is the console_log_kib TestConsoleFloodIsCapped sets.
const consoleFloodCapKiB = 64

// A container with CAP_MKNOD (one of docker's defaults) makes a node for
// the guest's console (c 5:1, which the device rules allow, as runc's do)
// and floods it for a few seconds: console.log and console.log.1 never hold
// more than twice console_log_kib on the host, the flood reached them (the
// log rotated), and the newest output is the one kept.
func TestConsoleFloodIsCapped(t *testing.T) {
	e := newEnv(t)
	e.appendConfig(fmt.Sprintf("console_log_kib = %d\n", consoleFloodCapKiB))
	c := e.spec.Process.Capabilities
	c.Bounding = append(c.Bounding, "CAP_MKNOD")
	c.Effective = append(c.Effective, "CAP_MKNOD")
	c.Permitted = append(c.Permitted, "CAP_MKNOD")
	e.spec.Process.Args = []string{"sh", "-c", `mknod /dev/guestcon c 5 1 || exit 1
		end=$(($(date +%s) + 4)); i=0
		while [ $(date +%s) -lt $end ]; do
			i=$((i+1)); yes "flood $i of the guest console" | head -c 65536 > /dev/guestcon
		done
		echo "flood done after $i rounds" > /dev/guestcon; echo done`}
	e.writeSpec()
	logs := []string{filepath.Join(e.root, "flood", "console.log"), filepath.Join(e.root, "flood", "console.log.1")}
	size := func() (n int64) {
		for _, p := range logs {
			if fi, err := os.Stat(p); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	const bound = 2 * consoleFloodCapKiB << 10
	stop := make(chan struct{})
	largest := make(chan int64)
	go func() {
		var m int64
		for {
			m = max(m, size())
			select {
			case <-stop:
				largest <- m
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	e.create("flood")
	e.mustRun("start", "flood")
	if !e.waitStatus("flood", "stopped", 60*time.Second) {
		t.Error("the flooding container did not stop")
	}
	close(stop)
	m := max(<-largest, size())
	cur, _ := os.ReadFile(logs[0])
	rotated, err := os.ReadFile(logs[1])
	t.Logf("console logs: at most %d bytes seen, %d + %d at the end", m, len(cur), len(rotated))
	if m > bound {
		t.Errorf("the console logs grew to %d bytes, above twice console_log_kib (%d)", m, bound)
	}
	if err != nil || !strings.Contains(string(rotated), "of the guest console") {
		t.Errorf("the flood did not reach console.log.1 (%v): the test shows nothing", err)
	}
	if !strings.Contains(string(cur), "flood done after") {
		t.Errorf("console.log lacks the newest output: %q", tail(string(cur), 200))
	}
	e.mustRun("delete", "--force", "flood")
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }
