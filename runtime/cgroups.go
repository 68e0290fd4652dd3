package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runvirt/runvirt/internal/cgroupv2"
)

// The container's limits are enforced inside the guest, on its processes.
// On the host the spec's cgroupsPath still gets a cgroup, holding everything
// the sandbox runs there (QEMU, virtiofsd, the monitor, the stand-ins; the
// monitor and virtiofsd keep a memory cgroup of their own: helpercgroup.go),
// with the CPU limits applied: that is what kubelet's accounting and tools
// reading /proc/<pid>/cgroup expect (Kata does the same). Memory and pids
// are only accounted on the host, never limited: a memory limit below the
// VM's own size would get QEMU OOM-killed, and a pids limit counts QEMU's,
// virtiofsd's and runvirt's own threads (`docker run --pids-limit 20` left
// them unable to start threads); the guest enforces both on the container's
// processes.

// cgroupRoot is where the host's cgroup file systems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// hostCgroup is the container's cgroup on the host, in every hierarchy.
type hostCgroup struct {
	dirs []string // one per hierarchy (cgroup v1) or the single v2 dir
}

// hostCgroupPath turns the spec's cgroupsPath into a path below the
// hierarchy roots. systemd's "slice:prefix:name" becomes
// slice/prefix-name.scope.
func hostCgroupPath(spec *specs.Spec, id string) string {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return ""
	}
	p := spec.Linux.CgroupsPath
	if parts := strings.Split(p, ":"); len(parts) == 3 && !strings.HasPrefix(p, "/") {
		slice, prefix, name := parts[0], parts[1], parts[2]
		if slice == "" {
			slice = "system.slice"
		}
		p = filepath.Join(slice, prefix+"-"+name+".scope")
	}
	return filepath.Clean("/" + p)
}

// hierarchies lists the cgroup mounts to use: the unified one when the host
// is pure cgroup v2, else the v1 controllers we set limits in or account.
func hierarchies() []string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return []string{cgroupRoot}
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range []string{"cpu,cpuacct", "cpu", "cpuacct", "pids", "memory", "cpuset"} {
		p, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, c))
		if err != nil || seen[p] {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// hasController says whether a v1 hierarchy (named like "cpu,cpuacct")
// holds the controller.
func hasController(hier, ctrl string) bool {
	for _, c := range strings.Split(filepath.Base(hier), ",") {
		if c == ctrl {
			return true
		}
	}
	return false
}

// setupHostCgroup creates the cgroup, applies the CPU limits and
// moves pids into it. It does nothing for a spec without cgroupsPath.
// helpers (the monitor and virtiofsd, in their own memory cgroup:
// helpercgroup.go) stay out of its memory cgroup: under v1 they join the
// other hierarchies only, under v2 none.
func setupHostCgroup(spec *specs.Spec, id string, pids []int, helpers map[int]bool) (*hostCgroup, error) {
	rel := hostCgroupPath(spec, id)
	if rel == "" || rel == "/" {
		return &hostCgroup{}, nil
	}
	cg := &hostCgroup{}
	for _, h := range hierarchies() {
		dir := filepath.Join(h, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("make cgroup %s: %w", dir, err)
		}
		cg.dirs = append(cg.dirs, dir)
		if err := applyHostLimits(h, dir, spec.Linux.Resources); err != nil {
			cg.remove()
			return nil, err
		}
		members := pids
		if h == cgroupRoot || hasController(h, "memory") {
			members = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return helpers[pid] })
		}
		if err := addToCgroup(dir, members); err != nil {
			cg.remove()
			return nil, err
		}
	}
	return cg, nil
}

// joinHostMemoryCgroup moves the calling process, the sandbox's monitor
// before it starts QEMU and virtiofsd, into the memory cgroup of the spec's
// cgroupsPath. A process's memory stays charged to the cgroup it was in when
// it touched it (v2 never moves charges, and current kernels no longer move
// them on v1 either), so a VM moved there only after its boot left most of
// its memory charged to the client's cgroup (the shim's): `docker stats`
// showed ~40 MiB for a QEMU of ~190 MiB. Only memory is joined early: the CPU
// limits come with setupHostCgroup after the boot, as before, so that
// `--cpus 0.5` does not slow the boot down.
func joinHostMemoryCgroup(spec *specs.Spec, id string) error {
	rel := hostCgroupPath(spec, id)
	if rel == "" || rel == "/" {
		return nil
	}
	for _, h := range hierarchies() {
		if h != cgroupRoot && !hasController(h, "memory") {
			continue
		}
		dir := filepath.Join(h, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", dir, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("join cgroup %s: %w", dir, err)
		}
	}
	return nil
}

func applyHostLimits(hier, dir string, r *specs.LinuxResources) error {
	v2 := hier == cgroupRoot
	var writes [][2]string
	if !v2 && hasController(hier, "cpuset") {
		// A v1 cpuset cgroup takes no task before its cpus and mems are set:
		// each level MkdirAll created (containerd's "/default/ID" makes two)
		// inherits its parent's, top down, as runc does.
		if err := initCpusetAncestors(hier, dir); err != nil {
			return err
		}
	}
	if r != nil && r.CPU != nil && v2 {
		// The same translation as the guest's, of the cpu controller's files
		// only: memory and pids are limited in the guest alone (see the top
		// of this file), and the v2 host leaves cpuset as the parent has it.
		cw, err := cgroupv2.Writes(&specs.LinuxResources{CPU: r.CPU})
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, w := range cw {
			if w.Controller() == "cpu" {
				writes = append(writes, [2]string{w.File, w.Value})
			}
		}
	}
	if r != nil && r.CPU != nil && !v2 {
		c := r.CPU
		if hasController(hier, "cpu") {
			if c.Shares != nil && *c.Shares != 0 {
				// Clamped as the kernel would, and as cpu.weight is under v2.
				writes = append(writes, [2]string{"cpu.shares", strconv.FormatUint(cgroupv2.ClampShares(*c.Shares), 10)})
			}
			if c.Period != nil && *c.Period != 0 {
				writes = append(writes, [2]string{"cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)})
			}
			if c.Quota != nil && *c.Quota != 0 {
				writes = append(writes, [2]string{"cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)})
			}
			if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
				writes = append(writes, [2]string{"cpu.rt_period_us", strconv.FormatUint(*c.RealtimePeriod, 10)})
			}
			if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
				writes = append(writes, [2]string{"cpu.rt_runtime_us", strconv.FormatInt(*c.RealtimeRuntime, 10)})
			}
		} else if hasController(hier, "cpuset") {
			if c.Cpus != "" {
				writes = append(writes, [2]string{"cpuset.cpus", c.Cpus})
			}
			if c.Mems != "" {
				writes = append(writes, [2]string{"cpuset.mems", c.Mems})
			}
		}
	}
	for _, w := range writes {
		if err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0o644); err != nil {
			return fmt.Errorf("cgroup %s: set %s to %s: %w", dir, w[0], w[1], err)
		}
	}
	return nil
}

// initCpusetAncestors gives every cpuset cgroup from below hier down to dir
// whose cpuset.cpus or cpuset.mems is empty its parent's value.
func initCpusetAncestors(hier, dir string) error {
	rel, err := filepath.Rel(hier, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return nil
	}
	parent := hier
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(cur, f))
			if err != nil || strings.TrimSpace(string(b)) != "" {
				continue
			}
			pb, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(cur, f), []byte(strings.TrimSpace(string(pb))), 0o644); err != nil {
				return fmt.Errorf("cgroup %s: set %s from its parent: %w", cur, f, err)
			}
		}
		parent = cur
	}
	return nil
}

// addToCgroup moves processes into the cgroup dir of one hierarchy.
func addToCgroup(dir string, pids []int) error {
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNoProcess(err) {
			return fmt.Errorf("move pid %d into cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

func isNoProcess(err error) bool {
	return strings.Contains(err.Error(), "no such process")
}

// remove deletes the cgroup directories (they must be empty by then).
func (cg *hostCgroup) remove() {
	for _, dir := range cg.dirs {
		os.Remove(dir)
	}
}

// removeHostCgroup deletes the container's host cgroup after its
// processes are gone. A process that was killed may still be in it for a
// moment (QEMU, dying of its monitor's death, first frees the VM's memory):
// the removal waits for that, up to 2 s.
func removeHostCgroup(spec *specs.Spec, id string) {
	rel := hostCgroupPath(spec, id)
	if rel == "" || rel == "/" {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, h := range hierarchies() {
		dir := filepath.Join(h, rel)
		for errors.Is(os.Remove(dir), unix.EBUSY) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// sandboxPids lists the host processes of a sandbox: the monitor and its
// children (QEMU, virtiofsd).
func sandboxPids(monitor int) []int {
	pids := []int{monitor}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", monitor))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", monitor, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
