package integration

import (
	"syscall"
	"testing"
	"time"
)

// A VM whose agent does not answer (its QEMU stopped here, as a wedged or
// desynchronised session looks from the host) leaves the container's
// status unknown, never stopped, and delete without --force refuses.
func TestStatusUnknownWhileAgentSilent(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.create("silent")
	e.mustRun("start", "silent")
	qemu := findProcess(t, "qemu-system", e.root+"/silent/")
	if err := syscall.Kill(qemu, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(qemu, syscall.SIGCONT)
	if st, ok := e.state("silent"); !ok || st.Status != "unknown" {
		t.Errorf("state with a silent agent: %+v %v, want unknown", st, ok)
	}
	e.mustFail("its agent does not answer", "delete", "silent")
	syscall.Kill(qemu, syscall.SIGCONT)
	if !e.waitStatus("silent", "running", 30*time.Second) {
		t.Error("not running again once the agent answers")
	}
	e.mustRun("delete", "--force", "silent")
}
