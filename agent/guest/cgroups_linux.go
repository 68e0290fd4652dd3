package guest

// Guest cgroups. Each container gets /sys/fs/cgroup/runvirt/<id> in the
// guest's cgroup v2 tree with the spec's resources; its processes are cloned
// straight into it (CLONE_INTO_CGROUP), so no process ever runs outside it.
// Without a cgroup2 mount at /sys/fs/cgroup (a kernel without cgroups, or a
// test host on v1) containers run without guest cgroups.
//
// Every container also gets a cgroup namespace rooted at that cgroup (see
// containerCgroupNS), so its /proc/self/cgroup says 0::/ and its cgroup
// mount shows its own limits; execs join that namespace.
//
// The layout is flat on purpose, pods included: a pod's containers are
// siblings under runvirt/, not children of the sandbox's cgroup. The
// sandbox container's own processes live in its cgroup, and cgroup v2 lets
// no cgroup with processes give controllers to children (the "no internal
// processes" rule), so nesting would need a pod cgroup with no processes of
// its own. It would buy little: the pod as a whole is the VM, which the host
// keeps in the sandbox's cgroup, under the client's pod cgroup.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runvirt/runvirt/internal/cgroupv2"
)

// cgroupRoot is where the guest's cgroup2 tree is mounted; a variable so that
// tests on a hybrid host can point it at a cgroup2 mount elsewhere.
var cgroupRoot = "/sys/fs/cgroup"

// cgroupParent groups the containers' cgroups, so that the agent's own
// cgroup (the root) has no siblings to compete with.
const cgroupParent = "runvirt"

// cgroupsEnabled reports whether cgroupRoot is a cgroup2 mount.
func cgroupsEnabled() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func cgroupDir(id string) string {
	return filepath.Join(cgroupRoot, cgroupParent, id)
}

// setupCgroup creates the container's cgroup, applies the spec's resources
// and device rules (devices_linux.go) and returns the open directory for
// CLONE_INTO_CGROUP; nil without cgroups.
func setupCgroup(id string, linux *specs.Linux) (*os.File, error) {
	if !cgroupsEnabled() {
		return nil, nil
	}
	parent := filepath.Join(cgroupRoot, cgroupParent)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", parent, err)
	}
	enableControllers(cgroupRoot)
	enableControllers(parent)
	dir := cgroupDir(id)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if linux != nil && linux.Resources != nil {
		if err := applyResources(dir, linux.Resources); err != nil {
			_ = os.Remove(dir)
			return nil, err
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	// Before any process is in the cgroup, so none ever runs unfiltered.
	if linux != nil && linux.Resources != nil {
		if err := applyDeviceRules(f, linux.Resources.Devices); err != nil {
			f.Close()
			_ = os.Remove(dir)
			return nil, err
		}
	}
	return f, nil
}

// containerCgroupNS decides whether a container init gets a cgroup namespace
// of its own: always where the guest gave it a cgroup, whatever the spec
// says, as runc does on a cgroup v2 host. The guest is always v2, while the
// spec is written for the host's cgroups (docker on a v1 host never asks for
// a cgroup namespace); without one the container would see the guest's
// whole tree at /sys/fs/cgroup and not its own limits. Without a guest
// cgroup the spec decides.
func containerCgroupNS(specAsks, haveCgroup bool) bool {
	return specAsks || haveCgroup
}

// openCgroup opens an existing container cgroup; nil when there is none.
func openCgroup(id string) (*os.File, error) {
	if !cgroupsEnabled() {
		return nil, nil
	}
	f, err := os.Open(cgroupDir(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	return f, nil
}

// RemoveCgroup removes the container's guest cgroup once all its processes
// have exited (rmdir fails with EBUSY before). A missing cgroup is no error.
func RemoveCgroup(id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	err := os.Remove(cgroupDir(id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup of %s: %w", id, err)
	}
	return nil
}

// enableControllers turns on every available controller for dir's children.
// Failures are left to show later: a resource file that is missing names the
// controller the guest kernel lacks.
func enableControllers(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return
	}
	for _, c := range strings.Fields(string(b)) {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0)
	}
}

// applyResources writes the spec's resources to the container's cgroup, by
// the translation the host shares (internal/cgroupv2). cpuset.cpus and
// cpuset.mems are left out: they number the host's CPUs and memory nodes,
// which the host confines QEMU to; the VM was given as many vCPUs as the
// set holds (SandboxConfig.SizeFor), numbered from 0, and has one node.
func applyResources(dir string, r *specs.LinuxResources) error {
	writes, err := cgroupv2.Writes(r)
	if err != nil {
		return err
	}
	for _, w := range writes {
		if w.Controller() == "cpuset" {
			continue
		}
		if err := writeExisting(filepath.Join(dir, w.File), w.Value); err != nil {
			if errors.Is(err, os.ErrNotExist) && w.File == "memory.swap.max" {
				continue // no swap accounting: a swap limit is moot
			}
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("set %s: %s controller not available in the guest: %w", w.File, w.Controller(), err)
			}
			return fmt.Errorf("set %s to %s: %w", w.File, w.Value, err)
		}
	}
	return nil
}

// writeExisting writes a cgroup file without creating it: a missing file
// means a missing controller and must say so.
func writeExisting(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
