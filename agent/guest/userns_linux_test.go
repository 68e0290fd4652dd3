package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// openForUserNS lets the root of a user namespace, which the host's root
// does not map, reach the rootfs: t.TempDir's parent is mode 0700.
func openForUserNS(t *testing.T, rootfs string) {
	t.Helper()
	for d := filepath.Dir(rootfs); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func userNSSpec(args ...string) *specs.Spec {
	spec := testSpec(args...)
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
	return spec
}

func TestSpawnInitUserNamespace(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	openForUserNS(t, root)
	spec := userNSSpec("sh", "-c", `cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; `+
		`grep -E '^CapEff' /proc/self/status; test -c /dev/null && echo devices; echo ready; exec sleep 1000`)
	s := newPipeStdio(t)
	p, _, err := spawnAndStart("userns", spec, root, s.child)
	s.closeChild()
	if err != nil {
		reapAny(t)
		s.wg.Wait()
		t.Fatalf("SpawnInit: %v (stderr: %s)", err, s.stderr.String())
	}
	var lines []string
	for l := s.waitLine(t); l != "ready"; l = s.waitLine(t) {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	defer func() {
		p.Signal(unix.SIGKILL)
		reap(t, p.Pid)
		s.wg.Wait()
	}()
	want := []string{"0 1000 2000", "0 1000 2000", "0", "0", "CapEff: " + capMask(t, defaultCaps...), "devices"}
	if !slices.Equal(lines, want) {
		t.Errorf("container said %q, want %q (stderr %q)", lines, want, s.stderr.String())
	}
	// The agent sees the container's root as the mapped host uid.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := statusFields(string(st), "Uid")["Uid"]; got != "1000 1000 1000 1000" {
		t.Errorf("init's uid seen from the agent = %q, want 1000", got)
	}

	// An exec can join every namespace but the user one; running it as the
	// guest's real root instead would be an escalation, so it is refused.
	proc := &specs.Process{Args: []string{"cat", "/proc/self/uid_map"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	_, _, err = SpawnExec("userns", p.Pid, spec, proc, Stdio{})
	if !errors.Is(err, errJoinUserNS) {
		t.Errorf("SpawnExec into a user namespace = %v, want %v", err, errJoinUserNS)
	}
}

func TestSpawnInitUserNamespaceErrors(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	noMaps := userNSSpec("true")
	noMaps.Linux.UIDMappings, noMaps.Linux.GIDMappings = nil, nil
	noNS := testSpec("true")
	noNS.Linux.UIDMappings = userNSSpec().Linux.UIDMappings
	withPath := userNSSpec("true")
	withPath.Linux.Namespaces[len(withPath.Linux.Namespaces)-1].Path = "/proc/1/ns/user"
	for name, tc := range map[string]struct {
		spec *specs.Spec
		want string
	}{
		"no mappings":    {noMaps, "user namespaces enabled, but no user mapping found"},
		"no namespace":   {noNS, "user namespace mappings specified, but user namespace isn't enabled in the config"},
		"namespace path": {withPath, "user namespace /proc/1/ns/user: joining an existing user namespace is not supported"},
	} {
		_, err := SpawnInit("userns-err", tc.spec, root, Stdio{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: SpawnInit = %v, want an error containing %q", name, err, tc.want)
		}
	}
}
