package runtime

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/runvirt/runvirt/agent"
)

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
