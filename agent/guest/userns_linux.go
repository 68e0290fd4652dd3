package guest

// User namespaces. A container init whose spec asks for a user namespace
// without a path is cloned into a new one together with its other
// namespaces, so that they are all owned by it; Go's clone writes the spec's
// uid and gid maps and makes the child root of the namespace before it execs
// the agent binary again, as runc's nsexec does; the child then builds the
// container as that user: device nodes are bound rather than created, and
// sysfs or cgroup2 that the namespace may not mount are bound from the agent.
//
// Joining an existing user namespace is refused: setns(CLONE_NEWUSER) needs a
// single-threaded process, and a Go process never is one (runc does it in C
// before its Go runtime starts). That covers a user namespace with a path and
// exec into a container that has its own user namespace; an exec that joined
// every namespace but the user one would run as the guest's real root.

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// errJoinUserNS explains why a user namespace cannot be joined.
var errJoinUserNS = errors.New("joining an existing user namespace is not supported " +
	"(setns(CLONE_NEWUSER) needs a single-threaded process)")

// findNamespace returns the spec's entry for namespace type t, or nil.
func findNamespace(l *specs.Linux, t specs.LinuxNamespaceType) *specs.LinuxNamespace {
	if l == nil {
		return nil
	}
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			return &l.Namespaces[i]
		}
	}
	return nil
}

// newUserNS reports whether the spec asks for a new user namespace.
func newUserNS(spec *specs.Spec) bool {
	ns := findNamespace(spec.Linux, specs.UserNamespace)
	return ns != nil && ns.Path == ""
}

// validateUserNS checks the user namespace and its mappings against each
// other, with runc's wording where runc has one.
func validateUserNS(l *specs.Linux) error {
	ns := findNamespace(l, specs.UserNamespace)
	if ns == nil {
		if l != nil && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) {
			return errors.New("user namespace mappings specified, but user namespace isn't enabled in the config")
		}
		return nil
	}
	if ns.Path != "" {
		return fmt.Errorf("user namespace %s: %w", ns.Path, errJoinUserNS)
	}
	switch {
	case len(l.UIDMappings) == 0 && len(l.GIDMappings) == 0:
		return errors.New("user namespaces enabled, but no user mapping found")
	case len(l.UIDMappings) == 0:
		return errors.New("user namespaces enabled, but no uid mappings found")
	case len(l.GIDMappings) == 0:
		return errors.New("user namespaces enabled, but no gid mappings found")
	}
	return nil
}

// idMaps converts spec mappings to the form Go's clone writes.
func idMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

// setUserNSMaps makes sys create a new user namespace with the spec's maps.
// setgroups stays allowed: the agent is privileged, and the workload's
// additional groups are set inside the namespace.
//
// The child must become uid and gid 0 of the namespace before its execve:
// it starts as the agent's ids, which the namespace does not map, so the
// execve would drop every capability, and files it created in a filesystem
// of the namespace (the /dev tmpfs) would fail with EOVERFLOW.
func setUserNSMaps(sys *syscall.SysProcAttr, l *specs.Linux) {
	sys.Cloneflags |= unix.CLONE_NEWUSER
	sys.UidMappings = idMaps(l.UIDMappings)
	sys.GidMappings = idMaps(l.GIDMappings)
	sys.GidMappingsEnableSetgroups = true
	sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
}

// sameUserNS reports whether pid is in the agent's own user namespace.
func sameUserNS(pid int) (bool, error) {
	self, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return false, fmt.Errorf("read user namespace: %w", err)
	}
	other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return false, fmt.Errorf("read user namespace of pid %d: %w", pid, err)
	}
	return self == other, nil
}
