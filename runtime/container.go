package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
)

// Container statuses, as runc names them.
const (
	StatusCreating = "creating"
	StatusCreated  = "created"
	StatusRunning  = "running"
	StatusPaused   = "paused"
	StatusStopped  = "stopped"
	// StatusUnknown is a container whose VM runs but whose agent does not
	// answer (a wedged or hostile guest): it may still be running, so it
	// is never reported as stopped.
	StatusUnknown = "unknown"
)

// statusTimeout bounds how long a verb waits for the agent when deriving a
// container's status; an agent that does not answer while its VM runs
// makes the status unknown.
const statusTimeout = 5 * time.Second

// Container is a container loaded from its state directory by a verb.
type Container struct {
	Dir   Dir
	State *State
	log   *slog.Logger
}

// Load finds the container id under the root of g.
func Load(g Globals, id string, log *slog.Logger) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	d := Dir{Root: g.Root, ID: id}
	st, err := LoadState(d)
	if err != nil {
		return nil, err
	}
	return &Container{Dir: d, State: st, log: log.With("container", id)}, nil
}

// LoadLocked loads the container and takes its lock, reading the state
// again under the lock (another verb may have changed it meanwhile). The
// caller unlocks.
func LoadLocked(g Globals, id string, log *slog.Logger) (*Container, *Lock, error) {
	c, err := Load(g, id, log)
	if err != nil {
		return nil, nil, err
	}
	lock, err := LockDir(c.Dir)
	if err != nil {
		return nil, nil, err
	}
	if c, err = Load(g, id, log); err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	return c, lock, nil
}

// sandboxDir is the state directory of the sandbox (VM) the container runs in.
func (c *Container) sandboxDir() Dir { return Dir{Root: c.Dir.Root, ID: c.State.Sandbox} }

// client talks to the agent of the container's sandbox.
func (c *Container) client() *agent.Client { return connectAgent(c.sandboxDir()) }

// Status derives the container's status from what is alive, never from the
// stored status alone: the monitor (the VM), the agent's view of the
// process, and the stand-in. It only reads: `state` and `list` must never
// signal anything (they run outside the container's lock, and a client may
// poll them at any time). A stand-in that died while its guest process runs
// (kill -9 of the pid a client waits on) counts as stopped, as runc's dead
// init does; the agent kills the orphan itself when the stand-in's wait
// stream (its lifeline) ends, and delete kills whatever is left.
func (c *Container) Status(ctx context.Context) string {
	st := c.State
	if st.Status == StatusCreating {
		if c.createInProgress() {
			return StatusCreating
		}
		return StatusStopped
	}
	if !st.Monitor.Alive() {
		return StatusStopped
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := c.client().State(ctx, st.ID)
	if err != nil {
		c.log.Debug("agent state", "err", err)
		return statusWithoutAnswer(err, st.Monitor)
	}
	switch resp.Status {
	case StatusCreated, StatusRunning, StatusPaused:
		if st.StandIn.Pid != 0 && !st.StandIn.Alive() {
			c.log.Debug("stand-in process is gone: stopped", "pid", st.StandIn.Pid)
			return StatusStopped
		}
		return resp.Status
	}
	return StatusStopped
}

// statusWithoutAnswer is the status of a container whose agent failed to
// tell its state. An agent that answered with an error (it knows no such
// container) and a VM that is gone by now (its monitor exited, as during a
// shutdown) mean stopped; a VM that runs while its agent is silent or
// garbled means unknown: its processes may still run, and reporting them
// stopped would let a client delete state, or reuse resources, under them.
func statusWithoutAnswer(err error, monitor ProcessRef) string {
	var re *agent.RemoteError
	if errors.As(err, &re) || !monitor.Alive() {
		return StatusStopped
	}
	return StatusUnknown
}

// createInProgress tells a create that is still working (it holds the
// lock) from one that died half-way.
func (c *Container) createInProgress() bool {
	f, err := os.OpenFile(c.Dir.Lock(), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	return false
}

// Pid is the pid clients see: the stand-in's, or 0 once stopped.
func (c *Container) Pid(status string) int {
	if status == StatusStopped {
		return 0
	}
	return c.State.StandIn.Pid
}

// OCIState is the state hooks read on stdin.
func (c *Container) OCIState(status string) *specs.State {
	return &specs.State{
		Version:     specs.Version,
		ID:          c.State.ID,
		Status:      specs.ContainerState(status),
		Pid:         c.Pid(status),
		Bundle:      c.State.Bundle,
		Annotations: c.State.Annotations,
	}
}

// RuncState is what `runvirt state` prints: runc's JSON.
type RuncState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RuncState returns the container's state as runc reports it.
func (c *Container) RuncState(ctx context.Context) RuncState {
	status := c.Status(ctx)
	return RuncState{
		OCIVersion: specs.Version, ID: c.State.ID, Pid: c.Pid(status), Status: status,
		Bundle: c.State.Bundle, Rootfs: c.State.Rootfs, Created: c.State.Created,
		Owner: c.State.Owner, Annotations: c.State.Annotations,
	}
}

// Spec returns the spec the container was created with (the copy taken at
// create, not the bundle's config.json, which may have changed since).
func (c *Container) Spec() (*specs.Spec, error) {
	b, err := os.ReadFile(c.Dir.Spec())
	if err != nil {
		return nil, fmt.Errorf("read spec of %s: %w", c.State.ID, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode spec of %s: %w", c.State.ID, err)
	}
	return &s, nil
}

// List returns the state of every container under the root.
func List(ctx context.Context, g Globals, log *slog.Logger) ([]RuncState, error) {
	ents, err := os.ReadDir(g.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", g.Root, err)
	}
	var out []RuncState
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(g.Root, e.Name(), "state.json")); err != nil {
			continue
		}
		c, err := Load(g, e.Name(), log)
		if err != nil {
			log.Warn("skipping unreadable container state", "container", e.Name(), "err", err)
			continue
		}
		out = append(out, c.RuncState(ctx))
	}
	return out, nil
}
