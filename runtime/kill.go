package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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

// Ps lists the container's processes by guest pid.
func Ps(ctx context.Context, g Globals, id string, log *slog.Logger) ([]int, error) {
	c, err := Load(g, id, log)
	if err != nil {
		return nil, err
	}
	if !c.State.Monitor.Alive() {
		return nil, nil
	}
	return c.client().Ps(ctx, id)
}
