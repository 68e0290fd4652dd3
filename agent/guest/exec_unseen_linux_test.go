package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestSpawnExecUnseenUntilInside: a container process with CAP_SYS_PTRACE
// watches /proc while execs start in its container. No process it can see
// may have the agent's root (here the host's) as its root: the exec child
// holds it until it has joined the container's mount namespace, so it must
// not be in the container's pid namespace before that.
func TestSpawnExecUnseenUntilInside(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	// Only the agent's root has this path: the container's rootfs is below
	// it.
	marker := filepath.Join(root, "bin", "busybox")
	caps := append([]string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}, defaultCaps...)
	spec := testSpec("sh", "-c", `echo ready
while :; do
	for p in /proc/[0-9]*; do
		[ -e "$p/root`+marker+`" ] && echo "$p" >> /root/leaks
	done
done`)
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	ip, _ := startReadyInit(t, "exec-unseen", spec, root)
	// The watcher does see a process whose root is the agent's, when there
	// is one in its pid namespace: itself, were it not in the container.
	proc := &specs.Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}, Cwd: "/", Capabilities: spec.Process.Capabilities}
	for i := 0; i < 100; i++ {
		ex := newPipeStdio(t)
		ep, _, err := SpawnExec("exec-unseen", ip.Pid, spec, proc, ex.child)
		ex.closeChild()
		if err != nil {
			t.Fatalf("SpawnExec: %v", err)
		}
		if ws := reap(t, ep.Pid); ws.ExitStatus() != 0 {
			t.Fatalf("exec: %v", ws)
		}
		ex.wg.Wait()
	}
	if b, err := os.ReadFile(filepath.Join(root, "root", "leaks")); err == nil {
		t.Errorf("the container saw processes with the agent's root:\n%s", strings.TrimSpace(string(b)))
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
