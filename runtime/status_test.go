package runtime

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/runvirt/runvirt/agent"
)

// A VM whose agent does not answer (a wedged or desynchronised session)
// leaves its containers' status unknown, never stopped; a monitor that is
// gone, or an agent that answers with an error, means stopped.
func TestStatusWithoutAnswer(t *testing.T) {
	self, err := RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	gone := ProcessRef{Pid: exited.Process.Pid, StartTime: 1}

	// An agent that takes the connection and never answers.
	silent := &agent.Client{Timeout: 200 * time.Millisecond, Dial: func(context.Context) (net.Conn, error) {
		ours, theirs := net.Pipe()
		t.Cleanup(func() { theirs.Close() })
		go func() {
			b := make([]byte, 1<<10)
			for {
				if _, err := theirs.Read(b); err != nil {
					return
				}
			}
		}()
		return ours, nil
	}}
	_, silentErr := silent.State(context.Background(), "c1")
	if silentErr == nil {
		t.Fatal("a silent agent answered")
	}
	notFound := &agent.RemoteError{Kind: agent.ErrKindNotFound, Msg: "no container c1"}
	for _, tc := range []struct {
		name    string
		err     error
		monitor ProcessRef
		want    string
	}{
		{"silent agent, vm runs", silentErr, self, StatusUnknown},
		{"silent agent, vm gone", silentErr, gone, StatusStopped},
		{"agent knows no such container", notFound, self, StatusStopped},
	} {
		if got := statusWithoutAnswer(tc.err, tc.monitor); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
