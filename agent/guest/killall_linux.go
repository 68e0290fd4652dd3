package guest

// Which processes are a container's: the members of its guest cgroup (see
// cgroups_linux.go), as runc's kill --all and ps take them. Its pid
// namespace will not do: a pod's containers may share the sandbox's
// (Kubernetes' shareProcessNamespace, CRI's NamespaceMode POD), and then the
// namespace holds the pause process and every sibling container too. And a
// process the container's init left behind in a shared namespace outlives
// the init, in the cgroup: kill --all after the init exited (containerd's
// runc shim sends one when the init of a container without a pid namespace
// of its own exits) must still reach it.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// killFreezeTimeout bounds the freeze that keeps a container from forking
// while it is signalled process by process. A freeze that does not settle
// (a task in uninterruptible sleep) is given up, and the processes are
// signalled unfrozen: a kill must not hang for freezeTimeout.
const killFreezeTimeout = time.Second

// signalAll sends sig to every process of container cid, as runc's kill
// --all: the members of its cgroup, or where it has none (a guest without
// cgroup v2) the processes in the pid namespace of initPid. A container
// whose init has exited may still have processes in its cgroup; without a
// cgroup nothing of it can be found (initPid may name another process by
// now), which is no error either, as with runc.
func (s *Server) signalAll(cid string, initPid int, initExited bool, sig unix.Signal) error {
	if dir, ok := ownCgroup(cid); ok {
		return signalCgroup(dir, sig)
	}
	if initExited || initPid == 0 {
		return nil
	}
	for _, q := range pidsInNamespace(initPid) {
		unix.Kill(q, sig)
	}
	return nil
}

// ps lists the container's processes by agent-visible pid, its init first:
// the members of its cgroup (those its init left behind included), or
// without a cgroup the processes in its init's pid namespace. A created
// container has none yet.
func (s *Server) ps(cid string) ([]int, error) {
	p, err := s.lookup(cid, "")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	started, pid := p.started, p.pid
	s.mu.Unlock()
	if !started {
		return nil, nil
	}
	if dir, ok := ownCgroup(cid); ok {
		pids, err := cgroupProcs(dir)
		if err != nil {
			return nil, fmt.Errorf("ps %s: %w", cid, err)
		}
		return initFirst(pids, pid), nil
	}
	if isClosed(p.exited) {
		return nil, nil
	}
	return pidsInNamespace(pid), nil
}

// initFirst moves pid to the front of pids if it is there.
func initFirst(pids []int, pid int) []int {
	for i, q := range pids {
		if q == pid {
			copy(pids[1:i+1], pids[:i])
			pids[0] = pid
			break
		}
	}
	return pids
}

// ownCgroup returns the directory of the container's guest cgroup, and
// whether it has one.
func ownCgroup(cid string) (string, bool) {
	if validateID(cid) != nil || !cgroupsEnabled() {
		return "", false
	}
	dir := cgroupDir(cid)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", false
	}
	return dir, true
}

// signalCgroup sends sig to every process in the cgroup at dir and below it.
// SIGKILL goes through cgroup.kill (Linux 5.14), which the kernel applies to
// the whole subtree at once, forks in flight included. Other signals, and
// SIGKILL on older kernels, go to each process while the cgroup is frozen,
// as runc does, so that none forks a child the signal misses; a cgroup that
// was frozen already (a paused container) stays so, its processes get the
// signal when they are thawed.
func signalCgroup(dir string, sig unix.Signal) error {
	if sig == unix.SIGKILL {
		err := writeExisting(filepath.Join(dir, "cgroup.kill"), "1")
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kill cgroup %s: %w", dir, err)
		}
	}
	thaw := false
	if frozen, err := cgroupFrozen(dir); err == nil && !frozen {
		thaw = freezeCgroup(dir, true, killFreezeTimeout) == nil
	}
	pids, err := cgroupProcs(dir)
	for _, pid := range pids {
		unix.Kill(pid, sig)
	}
	if thaw {
		if terr := freezeCgroup(dir, false, freezeTimeout); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	if err != nil {
		return fmt.Errorf("signal cgroup %s: %w", dir, err)
	}
	return nil
}

// cgroupProcs lists the processes in the cgroup at dir and in its
// descendants: a container may make child cgroups of its own (it has a
// cgroup namespace rooted at its cgroup). A child removed during the walk
// is skipped; so is a threaded child, whose processes its threaded domain
// lists. Each pid appears once.
func cgroupProcs(dir string) ([]int, error) {
	var pids []int
	seen := map[int]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		sub := path != dir
		if err != nil {
			if sub && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if sub && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EOPNOTSUPP)) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read cgroup.procs: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && n > 0 && !seen[n] {
				seen[n] = true
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids, err
}

// pidsInNamespace lists the agent-visible pids that share pid's pid
// namespace, pid first: a container's processes where the guest has no
// cgroups.
func pidsInNamespace(pid int) []int {
	want, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return nil
	}
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && ns == want {
			pids = append(pids, n)
		}
	}
	return pids
}
