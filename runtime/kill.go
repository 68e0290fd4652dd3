package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// Kill sends sig to the container's init process in the guest, or with all
// to every process of the container.
func Kill(ctx context.Context, g Globals, id string, sig unix.Signal, all bool) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	d := Dir{Root: g.Root, ID: id}
	st, err := LoadState(d)
	if err != nil {
		return err
	}
	if !st.Monitor.Alive() {
		return fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	sd := Dir{Root: g.Root, ID: st.Sandbox}
	err = connectAgent(sd).Signal(ctx, id, "", int(sig), all)
	var re *agent.RemoteError
	if errors.As(err, &re) && re.Kind == agent.ErrKindState {
		return fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	return err
}
