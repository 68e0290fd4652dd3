package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Start starts the process of a created container: the startContainer
// hooks, then the process in the guest, then the poststart hooks (whose
// failure only warns, as the spec says).
func Start(ctx context.Context, g Globals, id string, log *slog.Logger) error {
	c, lock, err := LoadLocked(g, id, log)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	switch status := c.Status(ctx); status {
	case StatusCreated:
	case StatusStopped:
		return fmt.Errorf("cannot start a container that has stopped")
	case StatusRunning, StatusPaused:
		return fmt.Errorf("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", status)
	}
	spec, err := c.Spec()
	if err != nil {
		return err
	}
	// docker ≥ 28 fills the network namespace between create and start.
	if plumbed, err := plumbLate(ctx, c, log); err != nil {
		return err
	} else if plumbed {
		if err := SaveState(c.Dir, c.State); err != nil {
			return err
		}
	}
	if err := runHooks(spec.Hooks, hookStartContainer, c.OCIState(StatusCreated)); err != nil {
		c.client().Signal(ctx, id, "", 9, false)
		return err
	}
	pid, err := c.client().Start(ctx, id, "")
	if err != nil {
		// The process never ran, and the agent ends its wait with 127: let
		// the stand-in exit before we return, as runc's init is gone when
		// its start fails. containerd's shim marks the container stopped
		// only when it reaps the pid-file pid, and dockerd deletes a
		// container whose start failed at once, giving up (and leaking the
		// VM) on "task must be stopped before deletion: created".
		waitGone(c.State.StandIn, 5*time.Second)
		return startError(err)
	}
	c.State.Status, c.State.GuestPid = StatusRunning, pid
	if err := SaveState(c.Dir, c.State); err != nil {
		return err
	}
	if err := runHooks(spec.Hooks, hookPoststart, c.OCIState(StatusRunning)); err != nil {
		log.Warn(err.Error())
	}
	return nil
}
