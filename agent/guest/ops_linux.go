package guest

// Pause, resume, stats and update: the operations that act on a container's
// guest cgroup (see cgroups_linux.go) rather than on one process. The cgroup
// is the source of truth: a container is paused exactly when its cgroup's
// cgroup.freeze is 1, so there is no flag to get out of step with it.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// freezeTimeout bounds the wait for the kernel to report a cgroup frozen or
// thawed. Freezing waits for every task to reach a safe point; a task stuck
// in an uninterruptible sleep (a hung mount) can hold it up indefinitely, and
// the host's call must not hang with it. runc waits up to 10 s as well.
const freezeTimeout = 10 * time.Second

// freezePoll is how often cgroup.events is read while waiting.
const freezePoll = 5 * time.Millisecond

// errNotRunning and errNotPaused use runc's wording (libcontainer's
// ErrNotRunning, ErrNotPaused), which the host passes on.
func errNotRunning() error { return badState("container not running") }
func errNotPaused() error  { return badState("container not paused") }

// liveCgroup returns the cgroup directory of a container whose init process
// is running (paused counts as running here).
func (s *Server) liveCgroup(cid string) (string, error) {
	p, err := s.lookup(cid, "")
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	started := p.started && p.pid != 0
	s.mu.Unlock()
	if !started || isClosed(p.exited) {
		return "", errNotRunning()
	}
	return containerCgroup(cid)
}

// containerCgroup is the cgroup directory of a started container; an error
// where the guest has no cgroup v2, since then nothing can be frozen or
// measured.
func containerCgroup(cid string) (string, error) {
	if err := validateID(cid); err != nil {
		return "", err
	}
	if !cgroupsEnabled() {
		return "", fmt.Errorf("container %s: the guest has no cgroup v2 hierarchy at %s", cid, cgroupRoot)
	}
	return cgroupDir(cid), nil
}

// pause freezes every process of the container.
func (s *Server) pause(cid string) error {
	dir, err := s.liveCgroup(cid)
	if err != nil {
		return err
	}
	frozen, err := cgroupFrozen(dir)
	if err != nil {
		return fmt.Errorf("pause %s: %w", cid, err)
	}
	if frozen {
		return errNotRunning() // paused, as runc says of a paused container
	}
	if err := freezeCgroup(dir, true, freezeTimeout); err != nil {
		return fmt.Errorf("pause %s: %w", cid, err)
	}
	s.log.Info("container paused", "container", cid)
	return nil
}

// resume thaws a paused container.
func (s *Server) resume(cid string) error {
	dir, err := s.liveCgroup(cid)
	var re *agent.RemoteError
	if errors.As(err, &re) && re.Kind == agent.ErrKindState {
		return errNotPaused() // created or stopped: not paused either
	}
	if err != nil {
		return err
	}
	frozen, err := cgroupFrozen(dir)
	if err != nil {
		return fmt.Errorf("resume %s: %w", cid, err)
	}
	if !frozen {
		return errNotPaused()
	}
	if err := freezeCgroup(dir, false, freezeTimeout); err != nil {
		return fmt.Errorf("resume %s: %w", cid, err)
	}
	s.log.Info("container resumed", "container", cid)
	return nil
}

// paused reports whether the container's cgroup is frozen; false where it
// has none. The state operation uses it to report "paused".
func (s *Server) paused(cid string) bool {
	if validateID(cid) != nil || !cgroupsEnabled() {
		return false
	}
	frozen, err := cgroupFrozen(cgroupDir(cid))
	return err == nil && frozen
}

// stats reads the container's resource usage and how many OOM kills its
// cgroup has counted so far. A created container reports zeros: its
// workload has not run yet.
func (s *Server) stats(cid string) (st *agent.Stats, oomKills uint64, err error) {
	p, err := s.lookup(cid, "")
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	started := p.started
	s.mu.Unlock()
	if !started {
		return &agent.Stats{}, 0, nil
	}
	if isClosed(p.exited) {
		return nil, 0, errNotRunning()
	}
	dir, err := containerCgroup(cid)
	if err != nil {
		return nil, 0, err
	}
	if st, err = readStats(dir); err != nil {
		return nil, 0, fmt.Errorf("stats of %s: %w", cid, err)
	}
	if oomKills, err = readOOMKills(dir); err != nil {
		return nil, 0, fmt.Errorf("stats of %s: %w", cid, err)
	}
	return st, oomKills, nil
}

// oomKills reads how many OOM kills the container's cgroup has counted,
// once its init has exited: the kernel counts a kill before the victim can
// die, and the cgroup outlives the init until delete. An unreadable count
// is logged and taken as none.
func (s *Server) oomKills(cid string) uint64 {
	if validateID(cid) != nil || !cgroupsEnabled() {
		return 0
	}
	n, err := readOOMKills(cgroupDir(cid))
	if err != nil {
		s.log.Warn("read oom kills", "container", cid, "err", err)
	}
	return n
}

// removeCgroup removes a deleted container's cgroup. rmdir fails (EBUSY)
// while a process is in it: those the host's kill --all has just killed may
// still be exiting, so a busy cgroup is tried again in the background, for
// at most exitWait, unless a new container of the same id has taken it
// over meanwhile (create marks the id under mu before it makes the cgroup,
// so a retry under mu never removes the new one's). One that stays busy (a
// process that would not die) leaks only a directory.
func (s *Server) removeCgroup(cid string) {
	if !cgroupsEnabled() {
		return
	}
	err := RemoveCgroup(cid)
	if errors.Is(err, unix.EBUSY) {
		go func() {
			deadline := time.Now().Add(exitWait)
			for errors.Is(err, unix.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(removeRetry)
				s.mu.Lock()
				if _, ok := s.containers[cid]; ok || s.creating[cid] {
					s.mu.Unlock()
					return
				}
				err = RemoveCgroup(cid)
				s.mu.Unlock()
			}
			if err != nil {
				s.log.Warn("remove cgroup", "container", cid, "err", err)
			}
		}()
		return
	}
	if err != nil {
		s.log.Warn("remove cgroup", "container", cid, "err", err)
	}
}

// removeRetry is how often a busy cgroup's removal is tried again.
const removeRetry = 20 * time.Millisecond

// readOOMKills returns the oom_kill count of the cgroup's memory.events:
// the processes the kernel's OOM killer ended in it or below it. Without the
// memory controller there is no such file and no count.
func readOOMKills(dir string) (uint64, error) {
	ev, err := readKeyValues(filepath.Join(dir, "memory.events"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return ev["oom_kill"], nil
}

// update changes the container's resource limits. Fields left nil (or 0)
// in r keep their value. The cgroup exists from create on (the init is set
// up there), so the limits of a created container are written to it too, as
// runc does.
func (s *Server) update(cid string, r *specs.LinuxResources) error {
	if r == nil {
		return &agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "update: resources are required"}
	}
	p, err := s.lookup(cid, "")
	if err != nil {
		return err
	}
	if isClosed(p.exited) {
		return errNotRunning()
	}
	dir, err := containerCgroup(cid)
	if err != nil {
		return err
	}
	if err := updateCgroup(dir, r); err != nil {
		return fmt.Errorf("update %s: %w", cid, err)
	}
	return nil
}

// updateCgroup writes r to a live cgroup. cpu.max holds quota and period in
// one file and memory.swap.max is derived from the memory limit, so a half
// given in r is completed from the cgroup's current value rather than reset.
func updateCgroup(dir string, r *specs.LinuxResources) error {
	r2 := *r
	if c := r.CPU; c != nil && (c.Quota == nil) != (c.Period == nil) {
		cpu := *c
		quota, period, err := readCPUMax(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return err
		}
		if cpu.Quota == nil {
			cpu.Quota = &quota
		}
		if cpu.Period == nil {
			cpu.Period = &period
		}
		r2.CPU = &cpu
	}
	if m := r.Memory; m != nil && m.Swap != nil && m.Limit == nil {
		mem := *m
		limit, err := readCgroupUint(filepath.Join(dir, "memory.max"))
		if err != nil {
			return err
		}
		l := int64(-1)
		if limit != math.MaxUint64 {
			l = int64(limit)
		}
		mem.Limit = &l
		r2.Memory = &mem
	}
	return applyResources(dir, &r2)
}

// readCPUMax parses cpu.max ("max 100000" or "50000 100000"); an unlimited
// quota is returned as -1.
func readCPUMax(path string) (int64, uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read cpu.max: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("parse %s: %q is not \"quota period\"", path, b)
	}
	quota := int64(-1)
	if f[0] != "max" {
		if quota, err = strconv.ParseInt(f[0], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", path, err)
		}
	}
	period, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return quota, period, nil
}

// cgroupFrozen reads the cgroup's freeze request (cgroup.freeze).
func cgroupFrozen(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.freeze"))
	if err != nil {
		return false, fmt.Errorf("read cgroup.freeze: %w", err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// freezeCgroup freezes (or thaws) the cgroup and waits, at most timeout, for
// cgroup.events to say the kernel has done it. A freeze that does not settle
// is undone, so a failed pause leaves the container running.
func freezeCgroup(dir string, freeze bool, timeout time.Duration) error {
	want := "0"
	if freeze {
		want = "1"
	}
	if err := writeExisting(filepath.Join(dir, "cgroup.freeze"), want); err != nil {
		return fmt.Errorf("write cgroup.freeze: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ev, err := readKeyValues(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if strconv.FormatUint(ev["frozen"], 10) == want {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(freezePoll)
	}
	if freeze {
		_ = writeExisting(filepath.Join(dir, "cgroup.freeze"), "0")
		return fmt.Errorf("freeze cgroup %s: not frozen after %s (a task in uninterruptible sleep?)", dir, timeout)
	}
	return fmt.Errorf("thaw cgroup %s: not thawed after %s", dir, timeout)
}

// readStats reads a cgroup v2 directory's usage the way runc's fs2 manager
// does. Files of a controller the guest kernel lacks (or has not enabled)
// are skipped and leave their fields zero.
func readStats(dir string) (*agent.Stats, error) {
	st := &agent.Stats{}
	path := func(f string) string { return filepath.Join(dir, f) }

	cpu, err := readKeyValues(path("cpu.stat"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// cpu.stat counts microseconds; runc reports nanoseconds.
	st.CPU.Usage.Total = cpu["usage_usec"] * 1000
	st.CPU.Usage.User = cpu["user_usec"] * 1000
	st.CPU.Usage.Kernel = cpu["system_usec"] * 1000
	st.CPU.Throttling.Periods = cpu["nr_periods"]
	st.CPU.Throttling.ThrottledPeriods = cpu["nr_throttled"]
	st.CPU.Throttling.ThrottledTime = cpu["throttled_usec"] * 1000

	raw, err := readKeyValues(path("memory.stat"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(raw) > 0 {
		st.Memory.Raw = raw
		st.Memory.Cache = raw["file"]
	}
	for _, f := range []struct {
		name string
		dst  *uint64
	}{
		{"memory.current", &st.Memory.Usage.Usage},
		{"memory.max", &st.Memory.Usage.Limit},
		{"memory.peak", &st.Memory.Usage.Max},
		{"memory.swap.current", &st.Memory.Swap.Usage},
		{"memory.swap.max", &st.Memory.Swap.Limit},
		{"memory.swap.peak", &st.Memory.Swap.Max},
		{"pids.current", &st.Pids.Current},
		{"pids.max", &st.Pids.Limit},
	} {
		v, err := readCgroupUint(path(f.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		*f.dst = v
	}
	events, err := readKeyValues(path("memory.events"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// v1's failcnt counted hits of the limit; v2's "max" event is that.
	st.Memory.Usage.Failcnt = events["max"]
	// v1, and so runc, report swap as memory+swap.
	st.Memory.Swap.Usage += st.Memory.Usage.Usage
	if st.Memory.Swap.Max != 0 {
		st.Memory.Swap.Max += st.Memory.Usage.Max
	}
	if st.Memory.Swap.Limit != math.MaxUint64 && st.Memory.Usage.Limit != math.MaxUint64 {
		st.Memory.Swap.Limit += st.Memory.Usage.Limit
	} else if st.Memory.Swap.Limit != 0 || st.Memory.Usage.Limit != 0 {
		st.Memory.Swap.Limit = math.MaxUint64
	}
	// An unlimited pids.max is 0 in runc's output, not MaxUint64.
	if st.Pids.Limit == math.MaxUint64 {
		st.Pids.Limit = 0
	}
	if _, err := os.Stat(path("pids.current")); errors.Is(err, os.ErrNotExist) {
		// No pids controller: count the processes instead, as runc does.
		b, err := os.ReadFile(path("cgroup.procs"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read cgroup.procs: %w", err)
		}
		st.Pids.Current = uint64(bytes.Count(b, []byte("\n")))
	}
	return st, nil
}

// readCgroupUint reads a single-value cgroup file; "max" is MaxUint64.
func readCgroupUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// readKeyValues reads a flat keyed cgroup file ("key value" lines:
// cpu.stat, memory.stat, memory.events, cgroup.events).
func readKeyValues(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			if k == "" {
				continue
			}
			return nil, fmt.Errorf("parse %s: line %q is not \"key value\"", path, sc.Text())
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s: key %s: %w", path, k, err)
		}
		m[k] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}
