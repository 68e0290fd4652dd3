package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/runtime"
)

// sharingPidNS is podMember for a container that also shares the
// sandbox's pid namespace (shareProcessNamespace), with dir bound at
// /ticks.
func (e *env) sharingPidNS(name string, sandboxPid int, dir string, args ...string) string {
	e.t.Helper()
	ann := map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "pod"}
	bundle := e.podMember(name, sandboxPid, ann, args...)
	s := readSpec(e.t, bundle)
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/pid", sandboxPid)
		}
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/ticks", Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
	writeSpecTo(e.t, bundle, s)
	return bundle
}

// guestPs lists `runvirt ps ID`'s guest pids.
func (e *env) guestPs(id string) []string {
	e.t.Helper()
	lines := strings.Split(strings.TrimSpace(e.mustRun("ps", id)), "\n")
	return lines[1:] // the header
}

// ticking reports whether the tick file grows over a second.
func ticking(path string) bool {
	before, _ := os.ReadFile(path)
	time.Sleep(1500 * time.Millisecond)
	after, _ := os.ReadFile(path)
	return len(after) > len(before)
}

// waitTicking waits until the tick file grows.
func waitTicking(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ticking(path) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not tick", filepath.Base(path))
		}
	}
}

const tickLoop = "while :; do echo t >> /ticks/%s; sleep 0.2; done"

// startPod creates and starts a pod sandbox "pod" and returns its
// stand-in's pid.
func (e *env) startPod() int {
	e.t.Helper()
	e.spec.Annotations = map[string]string{runtime.AnnotationCRIType: "sandbox", runtime.AnnotationCRISandbox: "pod"}
	e.spec.Process.Args = []string{"sleep", "600"}
	pid, _, _ := e.create("pod")
	e.mustRun("start", "pod")
	return pid
}

// stopPod kills and deletes the sandbox "pod" (stand-in pid).
func (e *env) stopPod(pid int) {
	e.t.Helper()
	e.mustRun("kill", "pod", "KILL")
	reapStandIn(e.t, pid, 60*time.Second)
	e.waitStatus("pod", "stopped", 30*time.Second)
	// kill --all of a stopped container is no error, as with runc, whether
	// its VM is still going down or gone.
	e.mustRun("kill", "--all", "pod", "KILL")
	e.mustRun("delete", "pod")
}

// kill --all reaches a container's processes, the members of its cgroup in
// the guest, and nothing else: in a pod whose containers share the
// sandbox's pid namespace it leaves the pause process and the sibling
// containers running, and ps lists the container's own processes alone.
// So do the kills that stand for it: a dead stand-in's and delete --force's.
func TestKillAllSharedPidNamespace(t *testing.T) {
	e := newEnv(t)
	ticks := t.TempDir()
	pid := e.startPod()

	aPid, _, _ := e.createBundle("a", e.sharingPidNS("a", pid, ticks, "sh", "-c", "sleep 600 & exec sleep 601"))
	e.mustRun("start", "a")
	bPid, _, _ := e.createBundle("b", e.sharingPidNS("b", pid, ticks, "sh", "-c", fmt.Sprintf(tickLoop, "b")))
	e.mustRun("start", "b")
	waitTicking(t, filepath.Join(ticks, "b"))
	podNS := e.mustRun("exec", "pod", "readlink", "/proc/self/ns/pid")
	if bNS := e.mustRun("exec", "b", "readlink", "/proc/self/ns/pid"); bNS != podNS {
		t.Fatalf("b's pid namespace %q is not the sandbox's %q", bNS, podNS)
	}

	// ps: each container's own processes, none of another's.
	psA, psB := e.guestPs("a"), e.guestPs("b")
	if len(psA) != 2 {
		t.Errorf("ps a = %v, want its init and its sleep", psA)
	}
	for _, p := range psA {
		for _, q := range psB {
			if p == q {
				t.Errorf("pid %s is listed by ps of both a (%v) and b (%v)", p, psA, psB)
			}
		}
	}

	e.mustRun("kill", "--all", "a", "KILL")
	if ws := reapStandIn(t, aPid, 60*time.Second); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("a's stand-in status %v, want killed by SIGKILL", ws)
	}
	if !e.waitStatus("a", "stopped", 30*time.Second) {
		t.Error("a is not stopped after kill --all")
	}
	if got := e.guestPs("a"); len(got) != 0 {
		t.Errorf("ps a after kill --all = %v", got)
	}
	for _, id := range []string{"pod", "b"} {
		if st, _ := e.state(id); st.Status != "running" {
			t.Fatalf("%s is %q after kill --all of a", id, st.Status)
		}
	}
	if out := e.mustRun("exec", "b", "echo", "b-alive"); out != "b-alive\n" {
		t.Errorf("exec in b after kill --all of a: %q", out)
	}
	if !ticking(filepath.Join(ticks, "b")) {
		t.Error("b's workload stopped with a's kill --all")
	}
	e.mustRun("delete", "a")

	// The same for the kill of the container's processes when its
	// stand-in dies, and for delete --force of a running one.
	syscall.Kill(bPid, syscall.SIGKILL)
	reapStandIn(t, bPid, 30*time.Second)
	if !e.waitStatus("b", "stopped", 30*time.Second) {
		t.Error("b is not stopped after kill -9 of its stand-in")
	}
	time.Sleep(time.Second)
	if ticking(filepath.Join(ticks, "b")) {
		t.Error("b's workload runs on after its stand-in died")
	}
	e.mustRun("delete", "b")
	e.createBundle("c", e.sharingPidNS("c", pid, ticks, "sleep", "600"))
	e.mustRun("start", "c")
	e.mustRun("delete", "--force", "c")
	if out := e.mustRun("exec", "pod", "echo", "pod-alive"); out != "pod-alive\n" {
		t.Errorf("exec in the sandbox after b's stand-in died and c's delete --force: %q", out)
	}
	e.stopPod(pid)
}

// What a container's init leaves behind in a pid namespace it shares stays
// in its cgroup: kill --all after the init exited still reaches it
// (containerd's shim sends one then, for a container without a pid
// namespace of its own), and so does delete.
func TestKillAllAfterInitExit(t *testing.T) {
	e := newEnv(t)
	ticks := t.TempDir()
	pid := e.startPod()
	e.createBundle("b", e.sharingPidNS("b", pid, ticks, "sh", "-c", fmt.Sprintf(tickLoop, "b")))
	e.mustRun("start", "b")

	// Inits that exit at once and leave a ticking child behind.
	for _, id := range []string{"c", "d"} {
		p, _, _ := e.createBundle(id, e.sharingPidNS(id, pid, ticks, "sh", "-c", "("+fmt.Sprintf(tickLoop, id)+") >/dev/null 2>&1 & exit 0"))
		e.mustRun("start", id)
		if ws := reapStandIn(t, p, 60*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
			t.Errorf("%s's stand-in status %v, want exit 0", id, ws)
		}
		if !e.waitStatus(id, "stopped", 30*time.Second) {
			t.Fatalf("%s is not stopped after its init exited", id)
		}
		waitTicking(t, filepath.Join(ticks, id))
	}
	// The leftover loop, and its sleep of the moment.
	if got := e.guestPs("c"); len(got) == 0 {
		t.Error("ps c after its init exited lists nothing, want its leftover")
	}
	if r := e.run("", "kill", "--all", "c", "KILL"); r.code != 0 {
		t.Errorf("kill --all after the init exited: exit %d, %s", r.code, r.stderr)
	}
	time.Sleep(time.Second)
	if ticking(filepath.Join(ticks, "c")) {
		t.Error("c's leftover runs on after kill --all")
	}
	e.mustRun("delete", "c")
	e.mustRun("delete", "d")
	time.Sleep(time.Second)
	if ticking(filepath.Join(ticks, "d")) {
		t.Error("d's leftover runs on after its delete")
	}
	if !ticking(filepath.Join(ticks, "b")) {
		t.Error("b's workload stopped with its siblings")
	}

	e.mustRun("delete", "--force", "b")
	e.stopPod(pid)
}
