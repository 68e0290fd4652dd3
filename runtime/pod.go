package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
)

// Pods: Kubernetes runs a pod as a sandbox container (the pause container)
// and then the pod's containers, each created with the runtime on its own,
// and says which is which in annotations. The sandbox container boots the
// pod's VM; every other container of the pod is created inside that VM, so
// a pod is one VM however many containers it has.

// The annotations containerd's CRI plugin and CRI-O put on a pod's specs.
const (
	AnnotationCRIType      = "io.kubernetes.cri.container-type"
	AnnotationCRISandbox   = "io.kubernetes.cri.sandbox-id"
	AnnotationCRIOType     = "io.kubernetes.cri-o.ContainerType"
	AnnotationCRIOSandbox  = "io.kubernetes.cri-o.SandboxID"
	containerTypeSandbox   = "sandbox"
	containerTypeContainer = "container"
)

// SandboxOf tells from a spec's annotations which sandbox (VM) the
// container id runs in: its own ID for a sandbox container or a container
// outside any pod, the pod's sandbox ID for a container of a pod.
func SandboxOf(id string, ann map[string]string) (string, error) {
	for _, k := range []struct{ typ, sandbox string }{
		{AnnotationCRIType, AnnotationCRISandbox},
		{AnnotationCRIOType, AnnotationCRIOSandbox},
	} {
		typ, ok := ann[k.typ]
		if !ok {
			continue
		}
		switch typ {
		case containerTypeSandbox:
			return id, nil
		case containerTypeContainer:
			sb := ann[k.sandbox]
			if sb == "" {
				return "", fmt.Errorf("annotation %s=%s needs the pod's sandbox in annotation %s", k.typ, typ, k.sandbox)
			}
			if err := ValidateID(sb); err != nil {
				return "", fmt.Errorf("annotation %s: %w", k.sandbox, err)
			}
			return sb, nil
		default:
			return "", fmt.Errorf("annotation %s: unknown container type %q (want %q or %q)", k.typ, typ, containerTypeSandbox, containerTypeContainer)
		}
	}
	return id, nil
}

// isCRISandbox says whether the annotations are those of a CRI runtime's
// pod sandbox container (containerd's CRI plugin or CRI-O).
func isCRISandbox(ann map[string]string) bool {
	return ann[AnnotationCRIType] == containerTypeSandbox || ann[AnnotationCRIOType] == containerTypeSandbox
}

// hasCRIType says whether a CRI runtime made the spec (its annotations say
// the container's type in a pod).
func hasCRIType(ann map[string]string) bool {
	_, cri := ann[AnnotationCRIType]
	_, crio := ann[AnnotationCRIOType]
	return cri || crio
}

// loadPodSandbox finds the running sandbox a container of a pod joins.
func loadPodSandbox(root, id, sandbox string) (*State, error) {
	st, err := LoadState(Dir{Root: root, ID: sandbox})
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("container %s: its pod sandbox %s does not exist", id, sandbox)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: pod sandbox: %w", id, err)
	}
	if st.Sandbox != st.ID {
		return nil, fmt.Errorf("container %s: %s is a container of pod %s, not a pod sandbox", id, sandbox, st.Sandbox)
	}
	if !st.Monitor.Alive() {
		return nil, fmt.Errorf("container %s: the vm of pod sandbox %s is not running", id, sandbox)
	}
	return st, nil
}

// sandboxNamespaces lists the namespaces a pod's container shares with its
// sandbox container: those whose path in the spec is one of the sandbox
// stand-in's (/proc/<pid>/ns/<type>, as CRI runtimes write it). The guest
// gives such a container the sandbox container's namespace of that type.
// The network namespace is not among them: every container of a VM uses
// the guest's own, which holds the pod's NICs.
func sandboxNamespaces(spec *specs.Spec, standIn int) []specs.LinuxNamespaceType {
	if spec.Linux == nil || standIn <= 0 {
		return nil
	}
	names := map[specs.LinuxNamespaceType]string{
		specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.PIDNamespace: "pid",
	}
	var out []specs.LinuxNamespaceType
	for _, ns := range spec.Linux.Namespaces {
		name, ok := names[ns.Type]
		if !ok || ns.Path == "" {
			continue
		}
		if sameFile(ns.Path, filepath.Join("/proc", strconv.Itoa(standIn), "ns", name)) {
			out = append(out, ns.Type)
		}
	}
	return out
}

// sameFile reports whether two paths name the same file (for namespace
// files: the same namespace), or are the same path.
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// leaveSandbox removes a pod's container from its sandbox's VM: its guest
// processes are killed and forgotten, and its share mounts are taken down.
// The VM itself runs on for the rest of the pod.
func leaveSandbox(c *Container) error {
	st := c.State
	sd := c.sandboxDir()
	var errs []error
	if st.Monitor.Alive() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := c.client()
		notFound := func(err error) bool {
			var re *agent.RemoteError
			return errors.As(err, &re) && re.Kind == agent.ErrKindNotFound
		}
		// Best effort: the processes may be gone already.
		if err := client.Signal(ctx, st.ID, "", int(syscall.SIGKILL), true); err != nil {
			c.log.Debug("kill the container's processes", "err", err)
		}
		if _, err := client.Wait(ctx, st.ID, ""); err != nil && !notFound(err) {
			c.log.Debug("wait for the container's exit", "err", err)
		}
		// An error while the VM goes down (its sandbox container exited)
		// is no error: the VM takes the container with it.
		if err := client.Delete(ctx, st.ID); err != nil && !notFound(err) && !waitGone(st.Monitor, 3*time.Second) {
			errs = append(errs, fmt.Errorf("delete %s in the vm: %w", st.ID, err))
		}
	}
	if err := removeShared(sd, st.ID); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// createInPod creates a container of a pod in the VM its sandbox booted:
// its rootfs and binds go into the sandbox's share, and the guest sets it
// up beside the sandbox container. It returns holding the container's lock.
func createInPod(ctx context.Context, o CreateOptions, b *Bundle, sandbox string) (*created, *Lock, error) {
	log := o.Log.With("container", o.ID, "sandbox", sandbox)
	sst, err := loadPodSandbox(o.Root, o.ID, sandbox)
	if err != nil {
		return nil, nil, err
	}
	var cl cleanup
	defer cl.Run()
	d, lock, err := makeStateDir(o.Root, o.ID, &cl)
	if err != nil {
		return nil, nil, err
	}
	sd := Dir{Root: o.Root, ID: sandbox}
	guestSpec, err := prepareShare(sd, o.ID, b, &cl)
	if err != nil {
		return nil, nil, err
	}
	guestSpec = forGuest(guestSpec, sandboxNamespaces(b.Spec, sst.StandIn.Pid))
	specJSON, err := json.Marshal(b.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := writeFileAtomic(d.Spec(), specJSON, 0o600); err != nil {
		return nil, nil, fmt.Errorf("save spec: %w", err)
	}
	st := &State{
		ID: o.ID, Bundle: b.Dir, Rootfs: b.Rootfs, Created: time.Now().UTC(),
		Owner: currentOwner(), Annotations: b.Spec.Annotations, Sandbox: sandbox,
		Status: StatusCreating, Config: sst.Config, Monitor: sst.Monitor,
	}
	if err := SaveState(d, st); err != nil {
		return nil, nil, err
	}
	c := &Container{Dir: d, State: st, log: log}
	if err := c.client().Create(ctx, o.ID, guestSpec, GuestRootfs(o.ID), sandbox); err != nil {
		return nil, nil, createError(err)
	}
	log.Debug("created in the pod's vm")
	cl.Release()
	return &created{Container: c, spec: b.Spec}, lock, nil
}
