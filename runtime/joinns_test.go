package runtime

import (
	"fmt"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestJoinedSandbox: a spec joining /proc/<stand-in>/ns/* of a container
// under the root goes into that container's VM; one joining a pid, ipc or
// uts namespace that is no container's, or another container's pid
// namespace without its network, is refused with the reason.
func TestJoinedSandbox(t *testing.T) {
	root := t.TempDir()
	self, err := RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	gone := deadRef(t)
	for _, st := range []*State{
		{ID: "x", Sandbox: "x", StandIn: self},
		{ID: "gone", Sandbox: "gone", StandIn: gone},
	} {
		d := Dir{Root: root, ID: st.ID}
		if err := os.Mkdir(d.Path(), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := SaveState(d, st); err != nil {
			t.Fatal(err)
		}
	}
	ns := func(typ specs.LinuxNamespaceType, pid int) specs.LinuxNamespace {
		if pid == 0 {
			return specs.LinuxNamespace{Type: typ}
		}
		name := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "pid", specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[typ]
		return specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, name)}
	}
	x := self.Pid
	other := os.Getppid()
	for _, c := range []struct {
		name    string
		ns      []specs.LinuxNamespace
		want    string
		wantErr string
	}{
		{"own namespaces", []specs.LinuxNamespace{ns(specs.PIDNamespace, 0), ns(specs.NetworkNamespace, 0)}, "new", ""},
		{"host network by path", []specs.LinuxNamespace{ns(specs.PIDNamespace, 0), ns(specs.NetworkNamespace, other)}, "new", ""},
		{"network of x", []specs.LinuxNamespace{ns(specs.PIDNamespace, 0), ns(specs.NetworkNamespace, x)}, "x", ""},
		{"pid, ipc, uts, network of x", []specs.LinuxNamespace{ns(specs.PIDNamespace, x), ns(specs.IPCNamespace, x), ns(specs.UTSNamespace, x), ns(specs.NetworkNamespace, x)}, "x", ""},
		{"pid of x, x's network by another path", []specs.LinuxNamespace{ns(specs.PIDNamespace, x), {Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}}, "x", ""},
		{"pid of x, own network", []specs.LinuxNamespace{ns(specs.PIDNamespace, x), ns(specs.NetworkNamespace, 0)}, "", "join its network namespace too"},
		{"pid of a host process", []specs.LinuxNamespace{ns(specs.PIDNamespace, other), ns(specs.NetworkNamespace, 0)}, "", "no runvirt container's"},
		{"ipc of a stopped container", []specs.LinuxNamespace{ns(specs.IPCNamespace, gone.Pid), ns(specs.NetworkNamespace, 0)}, "", "no runvirt container's"},
		{"pid of x, ipc of pid 1", []specs.LinuxNamespace{ns(specs.PIDNamespace, x), ns(specs.IPCNamespace, 1), ns(specs.NetworkNamespace, x)}, "", "no runvirt container's"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := joinedSandbox(root, "new", &specs.Spec{Linux: &specs.Linux{Namespaces: c.ns}})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
