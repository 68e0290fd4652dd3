package runtime

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
)

func TestSandboxOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string // sandbox, or "error: <part of the message>"
	}{
		{"no annotations", nil, "c1"},
		{"unrelated annotations", map[string]string{"org.example": "x"}, "c1"},
		{"containerd sandbox", map[string]string{AnnotationCRIType: "sandbox", AnnotationCRISandbox: "c1"}, "c1"},
		{"containerd container", map[string]string{AnnotationCRIType: "container", AnnotationCRISandbox: "pod1"}, "pod1"},
		{"cri-o sandbox", map[string]string{AnnotationCRIOType: "sandbox", AnnotationCRIOSandbox: "c1"}, "c1"},
		{"cri-o container", map[string]string{AnnotationCRIOType: "container", AnnotationCRIOSandbox: "pod2"}, "pod2"},
		{"container without sandbox", map[string]string{AnnotationCRIType: "container"}, "error: needs the pod's sandbox in annotation " + AnnotationCRISandbox},
		{"cri-o container without sandbox", map[string]string{AnnotationCRIOType: "container"}, "error: " + AnnotationCRIOSandbox},
		{"unknown type", map[string]string{AnnotationCRIType: "sidecar"}, `error: unknown container type "sidecar"`},
		{"bad sandbox id", map[string]string{AnnotationCRIType: "container", AnnotationCRISandbox: "../x"}, "error: annotation " + AnnotationCRISandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SandboxOf("c1", tc.ann)
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, want)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The namespaces a pod's container shares with its sandbox are those whose
// path is the sandbox stand-in's; forGuest marks them for the agent and
// drops the network namespace.
func TestSandboxNamespacesForGuest(t *testing.T) {
	pid := os.Getpid()
	ns := func(typ specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: typ, Path: path}
	}
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		ns(specs.PIDNamespace, ""),
		ns(specs.NetworkNamespace, "/var/run/netns/cni-1234"),
		ns(specs.IPCNamespace, fmt.Sprintf("/proc/%d/ns/ipc", pid)),
		ns(specs.UTSNamespace, fmt.Sprintf("/proc/%d/ns/uts", pid)),
		ns(specs.MountNamespace, ""),
		ns(specs.CgroupNamespace, "/proc/1/ns/cgroup"),
	}}}
	shared := sandboxNamespaces(s, pid)
	if !slices.Equal(shared, []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace}) {
		t.Fatalf("shared namespaces %v, want ipc and uts", shared)
	}
	if got := sandboxNamespaces(s, pid+1_000_000); len(got) != 0 {
		t.Errorf("another process's namespaces counted as the sandbox's: %v", got)
	}
	g := forGuest(s, shared)
	want := map[specs.LinuxNamespaceType]string{
		specs.PIDNamespace: "", specs.IPCNamespace: agent.SandboxNamespace, specs.UTSNamespace: agent.SandboxNamespace,
		specs.MountNamespace: "", specs.CgroupNamespace: "",
	}
	if len(g.Linux.Namespaces) != len(want) {
		t.Fatalf("guest namespaces %+v", g.Linux.Namespaces)
	}
	for _, n := range g.Linux.Namespaces {
		if p, ok := want[n.Type]; !ok || p != n.Path {
			t.Errorf("guest namespace %s has path %q, want %q", n.Type, n.Path, p)
		}
	}
	if s.Linux.Namespaces[2].Path == agent.SandboxNamespace {
		t.Error("forGuest changed the caller's spec")
	}
}

func TestSizeFor(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	base := SandboxConfig{VCPUs: 1, MemoryMiB: 256}
	for _, tc := range []struct {
		name     string
		res      *specs.LinuxResources
		cpus, mb int
	}{
		{"none", nil, 1, 256},
		{"small memory limit keeps the floor", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(128 << 20)}}, 1, 256},
		{"large memory limit grows the vm", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}, 1, 1024 + guestKernelMiB},
		{"unlimited memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}}, 1, 256},
		{"half a cpu", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000)}}, 1, 256},
		{"2.5 cpus", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(250000), Period: u64(100000)}}, 3, 256},
		{"capped at the host", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(1600000), Period: u64(100000)}}, 4, 256},
		{"cpuset", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1,3"}}, 3, 256},
		{"cpuset smaller than quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "2", Quota: i64(300000), Period: u64(100000)}}, 1, 256},
		{"bad cpuset", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}, 1, 256},
	} {
		s := &specs.Spec{Linux: &specs.Linux{Resources: tc.res}}
		got := base.SizeFor(s, 4)
		if got.VCPUs != tc.cpus || got.MemoryMiB != tc.mb {
			t.Errorf("%s: %d vCPUs, %d MiB; want %d, %d", tc.name, got.VCPUs, got.MemoryMiB, tc.cpus, tc.mb)
		}
	}
}
