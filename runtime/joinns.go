package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Containers that join another container's namespaces outside a CRI pod:
// docker's and podman's --pid/--ipc/--uts/--network container:X (and
// podman's pods) give the new container's spec /proc/<X's pid>/ns/<type>,
// X's pid being the pid runvirt told them, X's stand-in. Those namespaces
// are X's in X's VM, not the stand-in's on the host, so the new container
// can only have them inside X's VM: it joins that VM as a pod member would
// (createInPod). Every container of a VM shares its network, so joining a
// VM means joining X's network too; a spec that asks for X's pid namespace
// with a network of its own is refused rather than silently given X's
// network or a pid namespace of its own.

// nsPathRE matches the namespace paths docker and podman write.
var nsPathRE = regexp.MustCompile(`^/proc/([1-9][0-9]*)/ns/(pid|ipc|uts|net)$`)

// joinedNamespaces are the namespace types a container may share with
// another in the same VM.
var joinedNamespaces = map[specs.LinuxNamespaceType]bool{
	specs.PIDNamespace: true, specs.IPCNamespace: true,
	specs.UTSNamespace: true, specs.NetworkNamespace: true,
}

// joinedSandbox says which VM a container outside any CRI pod runs in: its
// own (id) unless its spec joins namespaces of another container under
// root, in which case that container's VM. A pid, ipc or uts namespace
// path that is no runvirt container's is refused: a VM cannot join a host
// namespace, and a namespace of its own would not be the one asked for. A
// network namespace path that is no container's is plumbed as before (CNI,
// ctr --with-ns).
func joinedSandbox(root, id string, spec *specs.Spec) (string, error) {
	if spec.Linux == nil {
		return id, nil
	}
	var owner *State
	var netJoined bool
	var netPath string
	for _, ns := range spec.Linux.Namespaces {
		if !joinedNamespaces[ns.Type] || ns.Path == "" {
			continue
		}
		st, err := namespaceOwner(root, ns.Path)
		if err != nil {
			return "", fmt.Errorf("%s namespace %s: %w", ns.Type, ns.Path, err)
		}
		if st == nil {
			if ns.Type == specs.NetworkNamespace {
				netPath = ns.Path
				continue
			}
			return "", fmt.Errorf("%s namespace %s: no runvirt container's: a container in a vm cannot join a host namespace", ns.Type, ns.Path)
		}
		if owner != nil && owner.ID != st.ID {
			return "", fmt.Errorf("%s namespace %s is container %s's, another is container %s's: joining the namespaces of two containers is not supported", ns.Type, ns.Path, st.ID, owner.ID)
		}
		owner = st
		if ns.Type == specs.NetworkNamespace {
			netJoined = true
			continue
		}
		if st.Sandbox != st.ID {
			return "", fmt.Errorf("container %s's %s namespace (%s): %s runs in the vm of container %s, and only that container's namespaces can be joined", st.ID, ns.Type, ns.Path, st.ID, st.Sandbox)
		}
	}
	if owner == nil {
		return id, nil
	}
	// podman gives a pod's members the pod's network namespace by its own
	// path (/run/netns/...), which the infra container's stand-in is in.
	if !netJoined && netPath != "" && sameFile(netPath, fmt.Sprintf("/proc/%d/ns/net", owner.StandIn.Pid)) {
		netJoined = true
	}
	if !netJoined {
		return "", fmt.Errorf("joining container %s's namespaces puts this container in %s's vm, whose network every container of it shares: join its network namespace too (docker, podman: --network container:%s)", owner.ID, owner.ID, owner.ID)
	}
	return owner.Sandbox, nil
}

// namespaceOwner finds the container under root whose live stand-in is the
// process of a namespace path (/proc/<pid>/ns/<type>). It returns nil for
// a path of any other form or of a process that is no container's.
func namespaceOwner(root, path string) (*State, error) {
	m := nsPathRE.FindStringSubmatch(filepath.Clean(path))
	if m == nil {
		return nil, nil
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		return nil, nil
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	for _, e := range ents {
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		st, err := LoadState(Dir{Root: root, ID: e.Name()})
		if err != nil {
			continue
		}
		if st.StandIn.Pid == pid && st.StandIn.Alive() {
			return st, nil
		}
	}
	return nil, nil
}
