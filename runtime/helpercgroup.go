package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A sandbox's host-side helpers, its monitor and virtiofsd, run as root and
// act on what the guest sends: a bug that lets the guest make them hold
// memory (as yamux's ping answers once did) must cost the host a bounded
// amount, not a node's RAM. The monitor's Go memory limit is a soft one, and
// virtiofsd has none. So both run in a memory cgroup of their own with a hard
// limit, helper_memory_mib (default 256): past it the kernel reclaims their
// page cache and then OOM-kills one of them, which ends that sandbox's VM
// (QEMU dies with its monitor) and nothing else.
//
// The cgroup is runvirt-helpers/<hash of root and id> below the memory
// hierarchy's root: cgroup v1's memory mount, or the unified hierarchy of v2
// (with the memory controller enabled for runvirt-helpers and its children).
// It is not below the spec's cgroupsPath, which holds QEMU and the stand-ins:
// there the helpers would be candidates of the OOM kill that ReflectOOM makes
// happen in a sandbox container's cgroup (oom.go), and under v2 a cgroup with
// processes can have no children with controllers. So the helpers' memory is
// charged to runvirt-helpers, not to the pod's cgroup; on v1 they stay in the
// spec's cgroup of every other hierarchy (cpu, pids, cpuset), so their CPU is
// still the pod's. Under v2, where a process is in one cgroup for every
// controller, they leave the spec's cgroup altogether.
//
// QEMU must not be born in the cgroup: the guest's RAM would be charged to
// it. The monitor therefore enters the cgroup only to start virtiofsd (so
// virtiofsd and the process it forks into its own namespaces are born in
// it), goes back to where it was started, starts QEMU, and enters it for
// good once the VM is up. The cgroup is removed when the sandbox is deleted.

// helperCgroupParent holds every sandbox's helper cgroup, below the memory
// hierarchy's root.
const helperCgroupParent = "runvirt-helpers"

// helperCgroup is a sandbox's helpers' memory cgroup. The zero value is
// off: helper_memory_mib = 0.
type helperCgroup struct {
	dir  string // the cgroup's directory; "" when off
	home string // the memory cgroup the monitor was started in
	mu   sync.Mutex
}

// memoryHierarchy returns where the memory controller is mounted: the
// unified hierarchy (v2), or v1's memory mount; "" without one.
func memoryHierarchy() (dir string, v2 bool) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
		if err == nil && slices.Contains(strings.Fields(string(b)), "memory") {
			return cgroupRoot, true
		}
		return "", true
	}
	p, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, "memory"))
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(filepath.Join(p, "memory.limit_in_bytes")); err != nil {
		return "", false
	}
	return p, false
}

// helperCgroupDir is the sandbox's helper cgroup directory, "" where the
// host has no memory controller.
func helperCgroupDir(d Dir) string {
	hier, _ := memoryHierarchy()
	if hier == "" {
		return ""
	}
	return filepath.Join(hier, d.HelperCgroup())
}

// newHelperCgroup makes the sandbox's helper cgroup with a limit of mib
// MiB; mib 0 turns it off. It fails, naming the key, where the host has no
// memory controller or the cgroup cannot be made.
func newHelperCgroup(d Dir, mib int) (*helperCgroup, error) {
	if mib <= 0 {
		return &helperCgroup{}, nil
	}
	hier, v2 := memoryHierarchy()
	if hier == "" {
		return nil, errors.New("helper_memory_mib: the host has no memory cgroup controller to limit the monitor and virtiofsd with (set helper_memory_mib = 0 to run them without a limit)")
	}
	home, err := ownMemoryCgroup(hier, v2)
	if err != nil {
		return nil, fmt.Errorf("helper cgroup: %w", err)
	}
	parent := filepath.Join(hier, helperCgroupParent)
	dir := filepath.Join(hier, d.HelperCgroup())
	fail := func(err error) (*helperCgroup, error) {
		os.Remove(dir)
		return nil, fmt.Errorf("helper cgroup %s (helper_memory_mib; 0 turns it off): %w", dir, err)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fail(err)
	}
	if v2 {
		// Each level down to the helpers' cgroups hands the memory
		// controller on.
		for _, p := range []string{hier, parent} {
			if err := os.WriteFile(filepath.Join(p, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
				return fail(fmt.Errorf("enable the memory controller below %s: %w", p, err))
			}
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fail(err)
	}
	limit := strconv.FormatInt(int64(mib)<<20, 10)
	writes := [][2]string{{"memory.limit_in_bytes", limit}, {"memory.memsw.limit_in_bytes", limit}}
	if v2 {
		writes = [][2]string{{"memory.max", limit}, {"memory.swap.max", "0"}}
	}
	for i, w := range writes {
		p := filepath.Join(dir, w[0])
		if i > 0 {
			// Swap accounting is optional: without it the file is missing.
			if _, err := os.Stat(p); err != nil {
				continue
			}
		}
		if err := os.WriteFile(p, []byte(w[1]), 0); err != nil {
			return fail(fmt.Errorf("set %s to %s: %w", w[0], w[1], err))
		}
	}
	return &helperCgroup{dir: dir, home: home}, nil
}

// ownMemoryCgroup is the memory cgroup directory of this process.
func ownMemoryCgroup(hier string, v2 bool) (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			return filepath.Join(hier, parts[2]), nil
		}
		for _, c := range strings.Split(parts[1], ",") {
			if !v2 && c == "memory" {
				return filepath.Join(hier, parts[2]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no memory cgroup in /proc/self/cgroup")
}

// enter moves the process pid into the cgroup.
func (hc *helperCgroup) enter(pid int) error {
	if hc.dir == "" {
		return nil
	}
	return movePid(hc.dir, pid)
}

// start starts cmd in the cgroup: the monitor enters it for the fork and
// goes back home, so that QEMU, started later, is not born there.
func (hc *helperCgroup) start(cmd *exec.Cmd) error {
	if hc.dir == "" {
		return cmd.Start()
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if err := movePid(hc.dir, os.Getpid()); err != nil {
		return err
	}
	err := cmd.Start()
	if herr := movePid(hc.home, os.Getpid()); herr != nil {
		if err == nil {
			cmd.Process.Kill()
		}
		return fmt.Errorf("leave the helper cgroup: %w", herr)
	}
	return err
}

func movePid(dir string, pid int) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move pid %d into cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// helperPids lists the processes in the sandbox's helper cgroup.
func helperPids(d Dir) map[int]bool {
	pids := map[int]bool{}
	dir := helperCgroupDir(d)
	if dir == "" {
		return pids
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return pids
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids[pid] = true
		}
	}
	return pids
}

// removeHelperCgroup removes the sandbox's helper cgroup once its helpers
// are gone, waiting a little for the last to leave it (an exiting process
// still counts for a moment).
func removeHelperCgroup(d Dir) error {
	dir := helperCgroupDir(d)
	if dir == "" {
		return nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove helper cgroup: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
