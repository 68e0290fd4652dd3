package runtime

import (
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
)

// fakeAgent stands in for a sandbox's monitor and guest agent: it listens
// on the sandbox's agent socket, answers each request with the answer
// scripted for its op and records every request in full, so that a verb
// can be tested without a VM. An op with no script is answered with an
// empty (successful) response.
type fakeAgent struct {
	mu      sync.Mutex
	reqs    []agent.Request                                // guarded by mu
	answers map[string]func(agent.Request) *agent.Response // guarded by mu
}

// silence is the answer that makes the fake close the stream without a
// response: an agent that does not answer (a wedged or hostile guest).
var silence *agent.Response

// newFakeAgent serves the agent socket of the sandbox d until the test
// ends. The socket directory is under SocketBase, so it needs root.
func newFakeAgent(t *testing.T, d Dir) *fakeAgent {
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
	f := &fakeAgent{answers: map[string]func(agent.Request) *agent.Response{}}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeAgent) serve(conn net.Conn) {
	defer conn.Close()
	var req agent.Request
	if agent.ReadFrame(conn, &req) != nil {
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	answer := f.answers[req.Op]
	f.mu.Unlock()
	resp := &agent.Response{}
	if answer != nil {
		resp = answer(req)
	}
	if resp != silence {
		agent.WriteFrame(conn, resp)
	}
}

// answer scripts the response to every request of op.
func (f *fakeAgent) answer(op string, resp *agent.Response) {
	f.answerWith(op, func(agent.Request) *agent.Response { return resp })
}

// answerWith scripts a response computed from each request of op.
func (f *fakeAgent) answerWith(op string, fn func(agent.Request) *agent.Response) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[op] = fn
}

// requests returns the requests received so far, in order.
func (f *fakeAgent) requests() []agent.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// seen returns the ops received so far, in order.
func (f *fakeAgent) seen() []string {
	var ops []string
	for _, r := range f.requests() {
		ops = append(ops, r.Op)
	}
	return ops
}

// startFakeAgent is a fake whose OpState answers status (guest pid 7).
func startFakeAgent(t *testing.T, d Dir, status string) *fakeAgent {
	t.Helper()
	f := newFakeAgent(t, d)
	f.answer(agent.OpState, &agent.Response{Status: status, Pid: 7})
	return f
}

// fakeProcess is a short-lived child standing in for a host process the
// state names (a monitor, a stand-in): the verb under test may signal it.
type fakeProcess struct {
	Ref    ProcessRef
	cmd    *exec.Cmd
	exited chan struct{} // closed once the child is reaped
}

func startFakeProcess(t *testing.T) *fakeProcess {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ref, err := RefOf(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	p := &fakeProcess{Ref: ref, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// killedBy waits a little for the child's exit and returns the signal
// that ended it (0 while it runs).
func (p *fakeProcess) killedBy(t *testing.T) os.Signal {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		return nil
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return nil
}

// selfRef is the test process: a monitor that stays alive.
func selfRef(t *testing.T) ProcessRef {
	t.Helper()
	ref, err := RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return ref
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

// writeContainer writes the state directory of st under root, as create
// leaves it: the state file and a copy of a minimal spec.
func writeContainer(t *testing.T, root string, st *State) Dir {
	t.Helper()
	d := Dir{Root: root, ID: st.ID}
	if err := os.MkdirAll(d.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := SaveState(d, st); err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(map[string]any{"ociVersion": "1.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Spec(), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func testLog() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }
