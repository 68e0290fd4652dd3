package guest

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// reapInto reaps pid as the agent's reaper loop would and hands its status
// to s's reaper; the channel closes then. The tests do not run the loop
// itself: its wait4(-1) would take the children of the tests that follow.
func reapInto(s *Server, pid int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			s.reaper.dispatch(pid, exitStatus(ws))
			return
		}
	}()
	return done
}

// testServer returns a server with a container created from spec, and the
// container's init.
func testServer(t *testing.T, id string, spec *specs.Spec, root string) (*Server, *process) {
	t.Helper()
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	t.Cleanup(func() { RemoveCgroup(id) })
	if err := s.create(&agent.Request{Container: id, Spec: spec, Rootfs: root}); err != nil {
		reapAny(t)
		t.Fatalf("create: %v", err)
	}
	p, err := s.lookup(id, "")
	if err != nil {
		t.Fatal(err)
	}
	reaped := reapInto(s, p.pid)
	t.Cleanup(func() {
		s.kill(id, p, unix.SIGKILL, true)
		<-reaped
	})
	return s, p
}

// attachStream attaches a stdio stream of the init and returns what it
// carries once it ends.
func attachStream(t *testing.T, s *Server, id, stream string) <-chan string {
	t.Helper()
	resp, attach := s.stdio(&agent.Request{Container: id, Stream: stream})
	if resp.Error != "" {
		t.Fatalf("attach %s: %s", stream, resp.Error)
	}
	agentEnd, hostEnd := net.Pipe()
	go attach(agentEnd)
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(hostEnd)
		out <- string(b)
	}()
	return out
}

func waitStatus(t *testing.T, p *process) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("process did not exit")
	}
	return p.status
}

func stateOf(s *Server, id string) *agent.Response {
	return s.state(&agent.Request{Container: id})
}

// TestServerCreateThenStart: create sets the container up without running
// its workload; start runs it, and the streams attached between carry all
// of its output.
func TestServerCreateThenStart(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", "echo ran > /ran; hostname; echo oops >&2; exit 3")
	s, p := testServer(t, "srv-start", spec, root)
	if st := stateOf(s, "srv-start"); st.Status != "created" || st.Error != "" {
		t.Errorf("state after create = %+v, want created", st)
	}
	stdout := attachStream(t, s, "srv-start", agent.StreamStdout)
	stderr := attachStream(t, s, "srv-start", agent.StreamStderr)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Fatal("the workload ran before start")
	}
	if isClosed(p.exited) {
		t.Fatalf("created init exited with %d", p.status)
	}
	pid, err := s.start(&agent.Request{Container: "srv-start"})
	if err != nil || pid != p.pid {
		t.Fatalf("start = %d, %v; want the created init's pid %d", pid, err, p.pid)
	}
	if status := waitStatus(t, p); status != 3 {
		t.Errorf("exit status %d, want 3", status)
	}
	if out, errOut := <-stdout, <-stderr; out != "ctr-host\n" || errOut != "oops\n" {
		t.Errorf("stdout %q stderr %q, want the hostname and oops", out, errOut)
	}
	if st := stateOf(s, "srv-start"); st.Status != "stopped" || st.ExitStatus != 3 {
		t.Errorf("state after exit = %+v, want stopped with 3", st)
	}
	if _, err := s.start(&agent.Request{Container: "srv-start"}); err == nil {
		t.Error("a second start succeeded")
	}
}

// TestServerCreateErrors: what runc reports at create fails create, with
// the kinds the host maps, and leaves no container.
func TestServerCreateErrors(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	badMount := testSpec("true")
	badMount.Mounts = append(badMount.Mounts, specs.Mount{Destination: "/mnt", Type: "bind", Source: "/no/such/source"})
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		kind string
		want string
	}{
		{"missing executable", testSpec("nosuchcmd"), agent.ErrKindExecutable, `exec: "nosuchcmd": executable file not found in $PATH`},
		{"missing path", testSpec("/bin/nope"), agent.ErrKindExecutable, `exec: "/bin/nope": stat /bin/nope: no such file or directory`},
		{"not executable", testSpec("/etc/passwd"), agent.ErrKindExecutable, `exec: "/etc/passwd": permission denied`},
		{"bad mount", badMount, "", "mount /mnt"},
	} {
		s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
		err := s.create(&agent.Request{Container: "srv-err", Spec: tc.spec, Rootfs: root})
		reapAny(t)
		resp := errResp(err)
		if err == nil || resp.ErrorKind != tc.kind || !strings.Contains(err.Error(), tc.want) ||
			(tc.kind == agent.ErrKindExecutable && err.Error() != tc.want) {
			t.Errorf("%s: create = %v (kind %q), want %q (kind %q)", tc.name, err, resp.ErrorKind, tc.want, tc.kind)
		}
		if st := stateOf(s, "srv-err"); st.ErrorKind != agent.ErrKindNotFound {
			t.Errorf("%s: state after a failed create = %+v, want not found", tc.name, st)
		}
		RemoveCgroup("srv-err")
	}
}

// TestServerKillCreated: a created container killed ends as if the signal
// had killed its workload, and kill returns once it has.
func TestServerKillCreated(t *testing.T) {
	requiresRoot(t)
	for _, tc := range []struct {
		sig  unix.Signal
		all  bool
		want int
	}{
		{unix.SIGKILL, false, 137},
		{unix.SIGTERM, false, 143},
		{unix.SIGKILL, true, 137},
	} {
		root := busyboxRootfs(t)
		s, p := testServer(t, "srv-kill", testSpec("touch", "/ran"), root)
		stdout := attachStream(t, s, "srv-kill", agent.StreamStdout)
		// Ignored by default: nothing happens.
		if err := s.kill("srv-kill", p, unix.SIGWINCH, false); err != nil || isClosed(p.exited) {
			t.Errorf("SIGWINCH to a created container = %v, exited %v", err, isClosed(p.exited))
		}
		if err := s.kill("srv-kill", p, tc.sig, tc.all); err != nil {
			t.Fatalf("kill %v: %v", tc.sig, err)
		}
		st := stateOf(s, "srv-kill")
		if st.Status != "stopped" || st.ExitStatus != tc.want {
			t.Errorf("state after kill %v = %+v, want stopped with %d", tc.sig, st, tc.want)
		}
		select {
		case <-stdout:
		case <-time.After(5 * time.Second):
			t.Errorf("stdout stream still open after kill %v", tc.sig)
		}
		if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
			t.Errorf("the workload ran after kill %v", tc.sig)
		}
		if _, err := s.start(&agent.Request{Container: "srv-kill"}); err == nil {
			t.Errorf("start after kill %v succeeded", tc.sig)
		}
		if err := s.delete("srv-kill"); err != nil {
			t.Error(err)
		}
	}
}

// TestServerLifelineKillsCreated: a waiter's stand-in that dies takes the
// created init with it.
func TestServerLifelineKillsCreated(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	s, p := testServer(t, "srv-life", testSpec("true"), root)
	agentEnd, hostEnd := net.Pipe()
	go s.watchLifeline(agentEnd, "srv-life", p)
	hostEnd.Close()
	if status := waitStatus(t, p); status != 137 {
		t.Errorf("status after the lifeline ended = %d, want 137", status)
	}
}

// TestShutdownAnswersSyncedThenPowersOff: the answer says the guest synced
// (the host may then stop the VM at once), and the power-off follows it.
func TestShutdownAnswersSyncedThenPowersOff(t *testing.T) {
	off := make(chan struct{})
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() { close(off) })
	resp, after := s.dispatch(&agent.Request{Op: agent.OpShutdown}, nil)
	if resp.Error != "" || !resp.Synced || after == nil {
		t.Fatalf("shutdown answered %+v (after set: %v), want synced and a power-off to follow", resp, after != nil)
	}
	select {
	case <-off:
		t.Fatal("powered off before the answer was sent")
	default:
	}
	agentEnd, hostEnd := net.Pipe()
	defer hostEnd.Close()
	go after(agentEnd)
	select {
	case <-off:
	case <-time.After(5 * time.Second):
		t.Fatal("no power-off after the answer")
	}
}
