package guest

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// readConsole collects what a pty master yields until the slave is gone
// (EIO), without the carriage returns of the line discipline.
func readConsole(t *testing.T, console *os.File) <-chan string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		var out bytes.Buffer
		io.Copy(&out, console)
		ch <- strings.ReplaceAll(out.String(), "\r", "")
	}()
	return ch
}

// ptyNumber is N of the /dev/pts/N that master belongs to.
func ptyNumber(t *testing.T, master *os.File) uint32 {
	t.Helper()
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioErr error
	rc.Control(func(fd uintptr) { n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN) })
	if ioErr != nil {
		t.Fatalf("TIOCGPTN: %v", ioErr)
	}
	return n
}

// terminalScript prints what a program that asks about its terminal sees.
const terminalScript = `tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo isatty; ` +
	`echo via-dev-tty >/dev/tty; grep -o 'NSsid:.*' /proc/self/status`

func TestSpawnInitTerminal(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", terminalScript+`; test -c /dev/console && echo console; `+
		`test "$(stat -c %t:%T /dev/console)" = "$(stat -c %t:%T /dev/pts/0)" && echo console-is-pts0`)
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 37, Width: 101}
	p, console, err := spawnAndStart("tty", spec, root, Stdio{})
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnInit: %v", err)
	}
	if console == nil {
		reap(t, p.Pid)
		t.Fatal("SpawnInit of a terminal process returned no console")
	}
	defer console.Close()
	out := readConsole(t, console)
	ws := reap(t, p.Pid)
	got := <-out
	// runc's answers: the container's first pty, its size from the spec.
	want := "/dev/pts/0\n37 101\nisatty\nvia-dev-tty\nNSsid:\t"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "console\nconsole-is-pts0\n") || ws.ExitStatus() != 0 {
		t.Errorf("terminal init said %q (status %v), want it to start with %q and bind /dev/console to /dev/pts/0", got, ws, want)
	}
	if n := ptyNumber(t, console); n != 0 {
		t.Errorf("console master is of pty %d, want 0 of the container's devpts", n)
	}
}

func TestSpawnExecTerminal(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", "echo ready; exec sleep 1000")
	ip, _ := startReadyInit(t, "exec-tty", spec, root)
	proc := &specs.Process{
		Args:         []string{"sh", "-c", terminalScript},
		Env:          []string{"PATH=/bin"},
		Cwd:          "/",
		Terminal:     true,
		ConsoleSize:  &specs.Box{Height: 24, Width: 80},
		Capabilities: spec.Process.Capabilities,
	}
	ep, console, err := SpawnExec("exec-tty", ip.Pid, spec, proc, Stdio{})
	if err != nil {
		t.Fatalf("SpawnExec: %v", err)
	}
	if console == nil {
		reap(t, ep.Pid)
		t.Fatal("SpawnExec of a terminal process returned no console")
	}
	defer console.Close()
	out := readConsole(t, console)
	ws := reap(t, ep.Pid)
	got := <-out
	m := regexp.MustCompile(`^/dev/pts/(\d+)\n24 80\nisatty\nvia-dev-tty\nNSsid:\t`).FindStringSubmatch(got)
	if m == nil || ws.ExitStatus() != 0 {
		t.Fatalf("terminal exec said %q (status %v), want /dev/pts/N, 24 80 and a working /dev/tty", got, ws)
	}
	if n := ptyNumber(t, console); m[1] != strconv.FormatUint(uint64(n), 10) {
		t.Errorf("exec's tty is /dev/pts/%s but its master is of pty %d", m[1], n)
	}
}

// TestServerTerminalStream drives the server as the host does: the pty
// stream and a resize come before start, when the pty does not exist yet.
func TestServerTerminalStream(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	spec := testSpec("sh", "-c", "tty; stty size")
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 10, Width: 20}
	t.Cleanup(func() { RemoveCgroup("srv-tty") })
	if err := s.create(&agent.Request{Container: "srv-tty", Spec: spec, Rootfs: root}); err != nil {
		t.Fatal(err)
	}
	resp, attach := s.stdio(&agent.Request{Container: "srv-tty", Stream: agent.StreamPTY})
	if resp.Error != "" || attach == nil {
		t.Fatalf("attach pty before start: %+v", resp)
	}
	agentEnd, hostEnd := net.Pipe()
	go attach(agentEnd)
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(hostEnd)
		out <- strings.ReplaceAll(string(b), "\r", "")
	}()
	// The host's resize wins over the spec's size.
	if err := s.resize(&agent.Request{Container: "srv-tty", Width: 90, Height: 30}); err != nil {
		t.Fatalf("resize before start: %v", err)
	}
	pid, err := s.start(&agent.Request{Container: "srv-tty"})
	if err != nil {
		reapAny(t)
		t.Fatalf("start: %v", err)
	}
	s.reaper.dispatch(pid, exitStatus(reap(t, pid)))
	select {
	case got := <-out:
		if got != "/dev/pts/0\n30 90\n" {
			t.Errorf("pty stream carried %q, want /dev/pts/0 and 30 90", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pty stream did not end after the process exited")
	}
	p, _ := s.lookup("srv-tty", "")
	<-p.exited
	if err := s.delete("srv-tty"); err != nil {
		t.Error(err)
	}
}

// TestServerTerminalStreamNeverStarted checks that the pty stream of a
// container deleted before start ends.
func TestServerTerminalStreamNeverStarted(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	spec := testSpec("true")
	spec.Process.Terminal = true
	t.Cleanup(func() { RemoveCgroup("c") })
	if err := s.create(&agent.Request{Container: "c", Spec: spec, Rootfs: root}); err != nil {
		reapAny(t)
		t.Fatal(err)
	}
	p, _ := s.lookup("c", "")
	reaped := reapInto(s, p.pid)
	_, attach := s.stdio(&agent.Request{Container: "c", Stream: agent.StreamPTY})
	agentEnd, hostEnd := net.Pipe()
	done := make(chan struct{})
	go func() { attach(agentEnd); close(done) }()
	if err := s.delete("c"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pty stream still waits after its process was deleted")
	}
	if _, err := hostEnd.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("host end read = %v, want EOF", err)
	}
	<-reaped
	<-p.exited
	if p.status != 137 {
		t.Errorf("deleted created init ended with %d, want 137", p.status)
	}
}

// TestSpawnInitTerminalUserNamespace: the root of a user namespace makes its
// pty and /dev/console from the devpts it mounted.
func TestSpawnInitTerminalUserNamespace(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	openForUserNS(t, root)
	spec := userNSSpec("sh", "-c", `tty; test -c /dev/console && echo console`)
	spec.Process.Terminal = true
	p, console, err := spawnAndStart("userns-tty", spec, root, Stdio{})
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnInit: %v", err)
	}
	defer console.Close()
	out := readConsole(t, console)
	ws := reap(t, p.Pid)
	if got := <-out; got != "/dev/pts/0\nconsole\n" || ws.ExitStatus() != 0 {
		t.Errorf("terminal init in a user namespace said %q (status %v)", got, ws)
	}
}

// TestSpawnInitTerminalWithoutDevpts: like runc, a terminal needs the
// container's devpts; without it the spawn fails and says why.
func TestSpawnInitTerminalWithoutDevpts(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("true")
	spec.Process.Terminal = true
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Type == "devpts" })
	init, err := SpawnInit("no-devpts", spec, root, Stdio{})
	reapAny(t)
	if err == nil || init != nil || !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "open container /dev/ptmx") {
		t.Errorf("SpawnInit of a terminal without devpts = %v, %v; want an ENOENT error opening /dev/ptmx", init, err)
	}
}
