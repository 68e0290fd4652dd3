package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// Kill sends sig to the container's init process in the guest, or with all
// to every process of the container: the members of its cgroup in the
// guest, which may outlive its init. As runc's kill --all, that is no error
// for a stopped container; one whose VM is gone has no process left.
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
		if all {
			return nil
		}
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

// HostPids lists the container's processes as the host sees them: the
// stand-ins of its init and of its execs. This is what `ps --format json`
// answers, as runc answers host pids: docker top and ctr task ps look them
// up in the host's process table, where the guest's pids name unrelated
// processes (guest pid 36 was the host's oom_reaper). The guest's own view
// is Ps.
func HostPids(g Globals, id string, log *slog.Logger) ([]int, error) {
	c, err := Load(g, id, log)
	if err != nil {
		return nil, err
	}
	pids := []int{}
	if c.State.StandIn.Alive() {
		pids = append(pids, c.State.StandIn.Pid)
	}
	// Exec stand-ins are not in the state; each is started with the
	// container's own stand-in log, a path no other container shares.
	logArg := standInLogArg(c.Dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list host processes: %w", err)
	}
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid == c.State.StandIn.Pid {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", en.Name()), &st) != nil || st.Uid != 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if slices.Contains(args, StandInCommand) && slices.Contains(args, logArg) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
