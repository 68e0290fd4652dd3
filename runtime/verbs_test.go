package runtime

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// The verbs below run against a state directory written by the test and a
// fakeAgent on the sandbox's socket: no VM. Each checks what reaches the
// agent, what the verb answers and what it leaves on disk.

func wantOps(t *testing.T, f *fakeAgent, want ...string) {
	t.Helper()
	if got := f.seen(); !slices.Equal(got, want) {
		t.Errorf("agent saw %q, want %q", got, want)
	}
}

// The signal and --all reach the agent as one OpSignal for the container's
// init; a pod member's goes to its sandbox's agent, naming the member.
func TestKillSendsTheSignalToTheAgent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sandbox string
		sig     unix.Signal
		all     bool
	}{
		{"term", "kill-c", unix.SIGTERM, false},
		{"kill-all", "kill-c", unix.SIGKILL, true},
		{"rtmin+3", "kill-c", 37, false},
		{"pod-member", "kill-sb", unix.SIGUSR1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			f := newFakeAgent(t, Dir{Root: root, ID: tc.sandbox})
			writeContainer(t, root, &State{ID: "kill-c", Sandbox: tc.sandbox, Status: StatusRunning, Monitor: selfRef(t)})
			if err := Kill(context.Background(), Globals{Root: root}, "kill-c", tc.sig, tc.all); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()
			want := agent.Request{Op: agent.OpSignal, Container: "kill-c", Signal: int(tc.sig), All: tc.all}
			if len(reqs) != 1 || !equalRequest(reqs[0], want) {
				t.Errorf("agent got %+v, want one %+v", reqs, want)
			}
		})
	}
}

func equalRequest(a, b agent.Request) bool {
	return a.Op == b.Op && a.Container == b.Container && a.Exec == b.Exec && a.Signal == b.Signal && a.All == b.All
}

// A container whose VM is gone has no process: kill fails as runc's does
// (container not running), kill --all succeeds, and neither asks an agent.
// With the VM up, the agent's state error is runc's not-running too.
func TestKillOfAStoppedContainer(t *testing.T) {
	ctx := context.Background()
	t.Run("vm-gone", func(t *testing.T) {
		root := t.TempDir()
		f := newFakeAgent(t, Dir{Root: root, ID: "kill-s"})
		writeContainer(t, root, &State{ID: "kill-s", Sandbox: "kill-s", Status: StatusRunning, Monitor: deadRef(t)})
		err := Kill(ctx, Globals{Root: root}, "kill-s", unix.SIGTERM, false)
		if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "container not running") {
			t.Errorf("kill = %v, want %v", err, ErrNotRunning)
		}
		if err := Kill(ctx, Globals{Root: root}, "kill-s", unix.SIGKILL, true); err != nil {
			t.Errorf("kill --all = %v, want success", err)
		}
		wantOps(t, f)
	})
	t.Run("init-exited", func(t *testing.T) {
		root := t.TempDir()
		f := newFakeAgent(t, Dir{Root: root, ID: "kill-s"})
		f.answer(agent.OpSignal, &agent.Response{Error: "process is not running", ErrorKind: agent.ErrKindState})
		writeContainer(t, root, &State{ID: "kill-s", Sandbox: "kill-s", Status: StatusRunning, Monitor: selfRef(t)})
		err := Kill(ctx, Globals{Root: root}, "kill-s", unix.SIGTERM, false)
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("kill = %v, want %v", err, ErrNotRunning)
		}
		wantOps(t, f, agent.OpSignal)
	})
}

// Kill refuses a bad id or a container that does not exist before it
// asks an agent. (A signal name kill does not know is refused earlier,
// where ParseSignal reads it: TestParseSignal.)
func TestKillRefusesBeforeAnyAgentCall(t *testing.T) {
	root := t.TempDir()
	f := newFakeAgent(t, Dir{Root: root, ID: "kill-none"})
	if err := Kill(context.Background(), Globals{Root: root}, "kill-none", unix.SIGTERM, false); !errors.Is(err, ErrNotExist) {
		t.Errorf("kill of a missing container = %v, want %v", err, ErrNotExist)
	}
	if err := Kill(context.Background(), Globals{Root: root}, "../kill-none", unix.SIGTERM, false); !errors.Is(err, ErrInvalidID) {
		t.Errorf("kill of ../kill-none = %v, want %v", err, ErrInvalidID)
	}
	wantOps(t, f)
}

// Start of a created container starts its init in the guest and records
// it running with the guest's pid.
func TestStartOfACreatedContainer(t *testing.T) {
	root := t.TempDir()
	f := startFakeAgent(t, Dir{Root: root, ID: "start-c"}, StatusCreated)
	f.answer(agent.OpStart, &agent.Response{Pid: 42})
	standIn := startFakeProcess(t)
	d := writeContainer(t, root, &State{ID: "start-c", Sandbox: "start-c", Status: StatusCreated, Monitor: selfRef(t), StandIn: standIn.Ref})
	if err := Start(context.Background(), Globals{Root: root}, "start-c", testLog()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, f, agent.OpState, agent.OpStart)
	if reqs := f.requests(); len(reqs) == 2 && (reqs[1].Container != "start-c" || reqs[1].Exec != "") {
		t.Errorf("start asked for container %q exec %q, want the init of start-c", reqs[1].Container, reqs[1].Exec)
	}
	st, err := LoadState(d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusRunning || st.GuestPid != 42 {
		t.Errorf("state after start: status %q guest pid %d, want running and 42", st.Status, st.GuestPid)
	}
}

// Start of a container that is not created is refused with runc's words,
// without asking the agent to start anything.
func TestStartRefusesAContainerNotCreated(t *testing.T) {
	for _, tc := range []struct {
		guest   string // the agent's state; "" for a VM that is gone
		want    string
		agentOp []string
	}{
		{StatusRunning, "cannot start an already running container", []string{agent.OpState}},
		{StatusPaused, "cannot start an already running container", []string{agent.OpState}},
		{"", "cannot start a container that has stopped", nil},
	} {
		name := tc.guest
		if name == "" {
			name = "vm-gone"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			f := startFakeAgent(t, Dir{Root: root, ID: "start-r"}, tc.guest)
			monitor := selfRef(t)
			if tc.guest == "" {
				monitor = deadRef(t)
			}
			writeContainer(t, root, &State{ID: "start-r", Sandbox: "start-r", Status: StatusRunning, Monitor: monitor, StandIn: monitor})
			err := Start(context.Background(), Globals{Root: root}, "start-r", testLog())
			if err == nil || err.Error() != tc.want {
				t.Errorf("start = %v, want %q", err, tc.want)
			}
			wantOps(t, f, tc.agentOp...)
		})
	}
}

// Delete refuses a container that may still run unless forced, and
// touches nothing: the state stays, the monitor lives, the agent is only
// asked for the state.
func TestDeleteRefusesARunningContainer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state *agent.Response
		want  string
	}{
		{"running", &agent.Response{Status: StatusRunning}, "cannot delete container del-r that is not stopped: running"},
		{"paused", &agent.Response{Status: StatusPaused}, "cannot delete container del-r that is not stopped: paused"},
		{"agent-silent", silence, "delete --force stops the vm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			f := newFakeAgent(t, Dir{Root: root, ID: "del-r"})
			f.answer(agent.OpState, tc.state)
			monitor := startFakeProcess(t)
			d := writeContainer(t, root, &State{ID: "del-r", Sandbox: "del-r", Status: StatusRunning, Monitor: monitor.Ref})
			err := Delete(context.Background(), Globals{Root: root}, "del-r", false, testLog())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("delete = %v, want %q", err, tc.want)
			}
			wantOps(t, f, agent.OpState)
			if _, err := LoadState(d); err != nil {
				t.Errorf("refused delete lost the state: %v", err)
			}
			if !monitor.Ref.Alive() {
				t.Error("refused delete stopped the monitor")
			}
		})
	}
}

// Delete --force of a running sandbox container kills its stand-in, shuts
// the guest down through the agent, stops the monitor and removes every
// trace: nothing is left under the root, and the socket directory is gone.
func TestDeleteForceStopsTheSandbox(t *testing.T) {
	root := t.TempDir()
	d := Dir{Root: root, ID: "del-f"}
	f := startFakeAgent(t, d, StatusRunning)
	f.answer(agent.OpShutdown, &agent.Response{Synced: true})
	monitor, standIn := startFakeProcess(t), startFakeProcess(t)
	writeContainer(t, root, &State{ID: d.ID, Sandbox: d.ID, Status: StatusRunning, Monitor: monitor.Ref, StandIn: standIn.Ref})
	begin := time.Now()
	if err := Delete(context.Background(), Globals{Root: root}, d.ID, true, testLog()); err != nil {
		t.Fatal(err)
	}
	// A synced guest's monitor is told to stop QEMU at once; without that
	// delete waits 10s for the guest's own power-off first.
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("delete of a synced sandbox took %v", took)
	}
	wantOps(t, f, agent.OpState, agent.OpShutdown)
	if sig := standIn.killedBy(t); sig != syscall.SIGKILL {
		t.Errorf("stand-in ended by %v, want SIGKILL", sig)
	}
	if sig := monitor.killedBy(t); sig != syscall.SIGTERM {
		t.Errorf("monitor ended by %v, want SIGTERM", sig)
	}
	wantEmptyRoot(t, root)
	if _, err := os.Stat(d.SocketDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket directory left: %v", err)
	}
}

// Delete --force of a pod's member kills its processes, waits for them and
// forgets it in the guest, through the sandbox's agent; the sandbox's VM
// and state are left alone.
func TestDeleteForceOfAPodMember(t *testing.T) {
	root := t.TempDir()
	sd := Dir{Root: root, ID: "del-sb"}
	f := startFakeAgent(t, sd, StatusRunning)
	monitor := startFakeProcess(t)
	writeContainer(t, root, &State{ID: sd.ID, Sandbox: sd.ID, Status: StatusRunning, Monitor: monitor.Ref})
	writeContainer(t, root, &State{ID: "del-m", Sandbox: sd.ID, Status: StatusRunning, Monitor: monitor.Ref})
	if err := Delete(context.Background(), Globals{Root: root}, "del-m", true, testLog()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, f, agent.OpState, agent.OpSignal, agent.OpWait, agent.OpDelete)
	for _, r := range f.requests() {
		if r.Container != "del-m" {
			t.Errorf("%s named container %q, want del-m", r.Op, r.Container)
		}
		if r.Op == agent.OpSignal && (r.Signal != int(unix.SIGKILL) || !r.All) {
			t.Errorf("delete sent signal %d all=%v, want SIGKILL to all", r.Signal, r.All)
		}
	}
	if _, err := os.Stat(Dir{Root: root, ID: "del-m"}.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("member's state left: %v", err)
	}
	if _, err := LoadState(sd); err != nil {
		t.Errorf("sandbox's state gone: %v", err)
	}
	if !monitor.Ref.Alive() {
		t.Error("deleting a member stopped the sandbox's monitor")
	}
}

// Delete of a stopped container (its VM gone) needs no force, asks no
// agent and leaves nothing under the root.
func TestDeleteOfAStoppedContainer(t *testing.T) {
	root := t.TempDir()
	f := newFakeAgent(t, Dir{Root: root, ID: "del-s"})
	writeContainer(t, root, &State{ID: "del-s", Sandbox: "del-s", Status: StatusRunning, Monitor: deadRef(t), StandIn: deadRef(t)})
	if err := Delete(context.Background(), Globals{Root: root}, "del-s", false, testLog()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, f)
	wantEmptyRoot(t, root)
}

func wantEmptyRoot(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left under the root: %s", e.Name())
	}
}

// Status end to end through the agent socket (TestStatusWithoutAnswer
// checks the mapping alone): an agent that answers with an error knows no
// such container, stopped; a silent agent while the VM runs leaves the
// status unknown, never stopped (a client would delete state under running
// processes); a status the agent has no business giving is stopped.
func TestStatusFromTheAgentsAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state *agent.Response
		want  string
	}{
		{"agent-error", &agent.Response{Error: "container status-e does not exist", ErrorKind: agent.ErrKindNotFound}, StatusStopped},
		{"agent-silent", silence, StatusUnknown},
		{"agent-says-stopped", &agent.Response{Status: StatusStopped}, StatusStopped},
		{"agent-garbled-status", &agent.Response{Status: "flying"}, StatusStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Dir{Root: t.TempDir(), ID: "status-e"}
			f := newFakeAgent(t, d)
			f.answer(agent.OpState, tc.state)
			c := &Container{Dir: d, log: testLog(), State: &State{
				ID: d.ID, Sandbox: d.ID, Status: StatusRunning, Monitor: selfRef(t), StandIn: selfRef(t),
			}}
			if got := c.Status(context.Background()); got != tc.want {
				t.Errorf("status = %q, want %q", got, tc.want)
			}
			wantOps(t, f, agent.OpState)
		})
	}
}

// Pause and resume check the status, then ask the agent; a container in
// the wrong state is refused without a pause or resume request.
func TestPauseResume(t *testing.T) {
	for _, tc := range []struct {
		verb  string
		guest string
		want  string // error text, "" for success
		op    string // the request sent after OpState, "" for none
	}{
		{"pause", StatusRunning, "", agent.OpPause},
		{"pause", StatusPaused, "container pr is already paused", ""},
		{"pause", StatusCreated, "container pr is created: container not running", ""},
		{"resume", StatusPaused, "", agent.OpResume},
		{"resume", StatusRunning, "container pr is not paused", ""},
	} {
		t.Run(tc.verb+"-"+tc.guest, func(t *testing.T) {
			root := t.TempDir()
			f := startFakeAgent(t, Dir{Root: root, ID: "pr"}, tc.guest)
			writeContainer(t, root, &State{ID: "pr", Sandbox: "pr", Status: StatusRunning, Monitor: selfRef(t), StandIn: selfRef(t)})
			verb := Pause
			if tc.verb == "resume" {
				verb = Resume
			}
			err := verb(context.Background(), Globals{Root: root}, "pr", testLog())
			if got := errText(err); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.verb, got, tc.want)
			}
			want := []string{agent.OpState}
			if tc.op != "" {
				want = append(want, tc.op)
			}
			wantOps(t, f, want...)
			if reqs := f.requests(); len(reqs) == 2 && reqs[1].Container != "pr" {
				t.Errorf("%s named container %q", tc.op, reqs[1].Container)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
