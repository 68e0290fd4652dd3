package runtime

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
)

// fakeAgent answers every request on the sandbox's agent socket with
// status and records the operations it was asked for.
type fakeAgent struct {
	mu  sync.Mutex
	ops []string // guarded by mu
}

func startFakeAgent(t *testing.T, d Dir, status string) *fakeAgent {
	t.Helper()
	testutil.RequiresRoot(t, "make the socket directory under "+SocketBase)
	if err := os.MkdirAll(d.SocketDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d.SocketDir()) })
	ln, err := net.Listen("unix", d.AgentSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeAgent{}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			var req agent.Request
			if agent.ReadFrame(conn, &req) == nil {
				f.mu.Lock()
				f.ops = append(f.ops, string(req.Op))
				f.mu.Unlock()
				agent.WriteFrame(conn, &agent.Response{Status: status, Pid: 7})
			}
			conn.Close()
		}
	}()
	return f
}

func (f *fakeAgent) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

// deadRef is a process that existed and is gone now.
func deadRef(t *testing.T) ProcessRef {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ref, err := RefOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return ref
}

// Status only reads: with the stand-in gone while the agent still reports
// the process running, the container is stopped and nothing is signalled
// (the agent's lifeline and delete deal with the orphan). It used to send
// a SIGKILL from inside `state` and `list`, outside the container's lock.
func TestStatusOfDeadStandInSignalsNothing(t *testing.T) {
	for _, guest := range []string{StatusRunning, StatusCreated, StatusPaused} {
		t.Run(guest, func(t *testing.T) {
			d := Dir{Root: t.TempDir(), ID: "status-read"}
			f := startFakeAgent(t, d, guest)
			self, err := RefOf(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			c := &Container{Dir: d, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), State: &State{
				ID: d.ID, Sandbox: d.ID, Status: StatusRunning, Monitor: self, StandIn: deadRef(t),
			}}
			if got := c.Status(context.Background()); got != StatusStopped {
				t.Errorf("status = %q, want %q", got, StatusStopped)
			}
			for _, op := range f.seen() {
				if op != string(agent.OpState) {
					t.Errorf("Status asked the agent for %q; it may only read (%s)", op, agent.OpState)
				}
			}
			if len(f.seen()) == 0 {
				t.Error("Status never asked the agent")
			}
		})
	}
}

// With the stand-in alive, the agent's answer is the status.
func TestStatusIsTheAgentsAnswer(t *testing.T) {
	d := Dir{Root: t.TempDir(), ID: "status-live"}
	startFakeAgent(t, d, StatusPaused)
	self, err := RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{Dir: d, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), State: &State{
		ID: d.ID, Sandbox: d.ID, Status: StatusRunning, Monitor: self, StandIn: self,
	}}
	if got := c.Status(context.Background()); got != StatusPaused {
		t.Errorf("status = %q, want %q", got, StatusPaused)
	}
}
