package integration

import (
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestExecUnseenUntilInside: a container process with CAP_SYS_PTRACE
// watches /proc while execs start in its container, looking for a process
// whose root is the guest's (where the agent's share is mounted). The
// agent's exec child holds that root until it has entered the container,
// so the container must never see it.
func TestExecUnseenUntilInside(t *testing.T) {
	e := newEnv(t)
	caps := append([]string{"CAP_SYS_PTRACE"}, e.spec.Process.Capabilities.Bounding...)
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	e.spec.Process.Args = []string{"sh", "-c", `while :; do
	for p in /proc/[0-9]*; do
		[ -d "$p/root/run/runvirt/shared" ] && echo "$p" >> /leaks
	done
done`}
	pid, _, _ := e.create("unseen")
	e.mustRun("start", "unseen")
	for i := 0; i < 10; i++ {
		e.mustRun("exec", "unseen", "true")
	}
	time.Sleep(200 * time.Millisecond)
	if out, err := e.command("exec", "unseen", "cat", "/leaks").CombinedOutput(); err == nil {
		t.Errorf("the container saw processes with the guest's root: %s", strings.TrimSpace(string(out)))
	}
	e.mustRun("delete", "--force", "unseen")
	reapStandIn(t, pid, 30*time.Second)
}
