package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// Delete removes a container: its processes, its VM (for a sandbox), its
// mounts and its state, then runs the poststop hooks (which only warn on
// failure). A running container needs force. Deleting a container that
// does not exist is an error, except with force.
func Delete(ctx context.Context, g Globals, id string, force bool, log *slog.Logger) error {
	c, lock, err := LoadLocked(g, id, log)
	if errors.Is(err, ErrNotExist) {
		return deleteLeftover(g, id, force, err)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	status := c.Status(ctx)
	switch status {
	case StatusRunning, StatusPaused:
		if !force {
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, status)
		}
	case StatusUnknown:
		if !force {
			return fmt.Errorf("cannot delete container %s: its vm runs but its agent does not answer (delete --force stops the vm)", id)
		}
	case StatusCreating:
		return fmt.Errorf("cannot delete container %s: it is being created", id)
	}
	spec, specErr := c.Spec()
	if err := destroyContainer(c, log); err != nil {
		return err
	}
	if specErr == nil {
		if err := runHooks(spec.Hooks, hookPoststop, c.OCIState(StatusStopped)); err != nil {
			log.Warn(err.Error())
		}
	}
	return nil
}

// deleteLeftover handles a state directory without a state file (a create
// that died before writing it): with force it is removed.
func deleteLeftover(g Globals, id string, force bool, notExist error) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if !force {
		return notExist
	}
	d := Dir{Root: g.Root, ID: id}
	os.RemoveAll(d.SocketDir())
	if _, err := os.Stat(d.Path()); err == nil {
		return removeMounted(d.Path())
	}
	return nil
}
