package clients

// A Kubernetes pod with shareProcessNamespace: true (CRI NamespaceOption
// Pid: POD) through containerd's CRI plugin: the pod's containers and its
// pause share one pid namespace, so the runc shim sends kill --all when a
// container's init exits, and that must reach only that container.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runcHandler is the RuntimeClass handler setup-containerd.sh registers for
// runc itself (containerd's default runtime), the reference runvirt is
// compared with.
const runcHandler = "runc"

// runSharedPidPod starts a pod of the handler whose containers share the
// pod's pid namespace, and registers its removal.
func (c *criClient) runSharedPidPod(name, handler string) (string, *cri.PodSandboxConfig) {
	c.t.Helper()
	return c.runPodOf(name, handler, cri.NamespaceMode_POD)
}

// containerStatus is the container's CRI status.
func (c *criClient) containerStatus(id string) *cri.ContainerStatus {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	r, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		c.t.Fatalf("ContainerStatus: %v", err)
	}
	return r.Status
}

// waitExited waits up to a minute for the container to exit and returns its status.
func (c *criClient) waitExited(id string) *cri.ContainerStatus {
	c.t.Helper()
	var st *cri.ContainerStatus
	waitFor(time.Minute, func() bool {
		st = c.containerStatus(id)
		return st.State == cri.ContainerState_CONTAINER_EXITED
	})
	return st
}

// criLeftInContainerd lists the tasks of the ids in containerd's k8s.io
// namespace and the runc shims serving them.
func criLeftInContainerd(ids ...string) []string {
	return leftInContainerd(ctrCommand("-n", "k8s.io", "tasks", "ls", "-q"), "k8s.io", func(s string) bool { return slices.Contains(ids, s) })
}

// The workloads of the shared-pid pod; each script's text is its marker in
// ps, which lists sh's arguments.
const (
	// sharedA exits on SIGTERM (it is not its pid namespace's init, so the
	// kernel's default action applies) and leaves its background sleep to
	// the shim's kill --all.
	sharedA = `sleep 1001 & while :; do sleep 1; done # workload-a`
	// sharedB ticks: its count goes up once a second (renamed into place,
	// so a reader never finds the file empty).
	sharedB = `n=0; while :; do n=$((n+1)); echo $n >/tmp/t; mv /tmp/t /tmp/ticks; sleep 1; done # workload-b`
	// sharedC leaves a background sleep behind when its init exits.
	sharedC = `sleep 1234 & sleep 3; exit 0`
)

// sharedPidResult is what a handler gave for the shared-pid pod, to compare
// runvirt with runc.
type sharedPidResult struct {
	stopA, exitC int32
	reasonA      string
}

// TestCRISharedPidNamespace: a pod with shareProcessNamespace: true and two
// containers A and B. Each sees the other's workload in ps and the pause as
// pid 1, and exec works in both. StopContainer(A) (SIGTERM, then the runc
// shim's kill --all when A's init exits) leaves B running and ticking and
// the pod ready; A's exit code and reason are runc's. A third container that
// exits leaving a background sleep behind has that sleep killed by the
// shim's kill --all: B's ps no longer lists it. Removing the pod leaves no
// VM, shim, task, process, mount or runvirt state. The same steps run with
// the runc handler first, as the reference.
func TestCRISharedPidNamespace(t *testing.T) {
	var want *sharedPidResult
	t.Run("runc", func(t *testing.T) {
		if _, err := exec.LookPath("runc"); err != nil {
			t.Skip("runc is not installed: nothing to compare with")
		}
		want = sharedPidPod(t, runcHandler)
	})
	t.Run("runvirt", func(t *testing.T) {
		before := qemuCount()
		got := sharedPidPod(t, criHandler)
		if want != nil && got != nil && *got != *want {
			t.Errorf("runvirt gave %+v, runc %+v", *got, *want)
		}
		if !waitFor(20*time.Second, func() bool { return qemuCount() == before }) {
			t.Errorf("VMs left after the pod's removal: %d", qemuCount()-before)
		}
	})
}

// sharedPidPod runs the steps of TestCRISharedPidNamespace with the handler
// and returns what it read of the containers' ends (nil if it failed
// before).
func sharedPidPod(t *testing.T, handler string) *sharedPidResult {
	c := newCRIClient(t)
	pod, podCfg := c.runSharedPidPod("rv-sharedpid-"+handler, handler)
	a := c.startContainer(pod, podCfg, "a", "sh", "-c", sharedA)
	b := c.startContainer(pod, podCfg, "b", "sh", "-c", sharedB)
	ids := []string{pod, a, b}

	// One pid namespace: the pause is pid 1, and each sees the other.
	for _, w := range []struct{ id, name, other string }{{a, "a", "workload-b"}, {b, "b", "workload-a"}} {
		if init, _ := c.execSync(w.id, "cat", "/proc/1/cmdline"); strings.TrimRight(init, "\x00") != "/pause" {
			t.Errorf("pid 1 seen by %s: %q, want /pause", w.name, init)
		}
		var ps string
		waitFor(10*time.Second, func() bool {
			ps, _ = c.execSync(w.id, "ps", "-o", "pid,args")
			return strings.Contains(ps, w.other)
		})
		if !strings.Contains(ps, w.other) {
			t.Errorf("ps in %s lists no %s:\n%s", w.name, w.other, ps)
		}
		if out, code := c.execSync(w.id, "sh", "-c", "echo exec-"+w.name+"; exit 4"); out != "exec-"+w.name+"\n" || code != 4 {
			t.Errorf("exec in %s: %q, exit %d; want %q, 4", w.name, out, code, "exec-"+w.name+"\n")
		}
	}

	// Stop A: SIGTERM ends its sh; the shim's kill --all on that exit must
	// spare B and the pause.
	ctx, cancel := criCtx()
	defer cancel()
	if _, err := c.rt.StopContainer(ctx, &cri.StopContainerRequest{ContainerId: a, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer a: %v", err)
	}
	stA := c.containerStatus(a)
	if stA.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("a after stop: %v", stA.State)
	}
	t.Logf("%s: a stopped: exit code %d, reason %q", handler, stA.ExitCode, stA.Reason)
	time.Sleep(2 * time.Second) // give a wrong kill --all time to land
	if st := c.containerStatus(b); st.State != cri.ContainerState_CONTAINER_RUNNING {
		t.Errorf("b after a's stop: %v (exit code %d)", st.State, st.ExitCode)
	}
	if out, _ := c.execSync(b, "echo", "b-answers"); out != "b-answers\n" {
		t.Errorf("exec in b after a's stop: %q", out)
	}
	t1, _ := c.execSync(b, "cat", "/tmp/ticks")
	var t2 string
	waitFor(10*time.Second, func() bool {
		t2, _ = c.execSync(b, "cat", "/tmp/ticks")
		return t2 != t1
	})
	if t1 == "" || t2 == t1 {
		t.Errorf("b's workload does not tick after a's stop: %q then %q", t1, t2)
	}
	if init, _ := c.execSync(b, "cat", "/proc/1/cmdline"); strings.TrimRight(init, "\x00") != "/pause" {
		t.Errorf("pid 1 after a's stop: %q, want /pause", init)
	}
	var list string
	gone := func(what ...string) func() bool {
		return func() bool {
			list, _ = c.execSync(b, "ps", "-o", "pid,args")
			for _, w := range what {
				if strings.Contains(list, w) {
					return false
				}
			}
			return true
		}
	}
	if !waitFor(10*time.Second, gone("workload-a", "sleep 1001")) {
		t.Errorf("a's processes outlive its stop:\n%s", list)
	}
	ps, err := c.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	if ps.Status.State != cri.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after a's stop: %v", ps.Status.State)
	}
	if _, err := c.rt.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: a}); err != nil {
		t.Fatalf("RemoveContainer a: %v", err)
	}

	// C's init exits and leaves its sleep behind: kill --all ends it.
	cID := c.startContainer(pod, podCfg, "c", "sh", "-c", sharedC)
	ids = append(ids, cID)
	waitFor(10*time.Second, func() bool {
		list, _ = c.execSync(b, "ps", "-o", "pid,args")
		return strings.Contains(list, "sleep 1234")
	})
	if !strings.Contains(list, "sleep 1234") {
		t.Errorf("b does not see c's background sleep:\n%s", list)
	}
	stC := c.waitExited(cID)
	if stC.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("c: %v, want exited", stC.State)
	}
	if !waitFor(10*time.Second, gone("sleep 1234")) {
		t.Errorf("c's background sleep outlives c's init:\n%s", list)
	}
	if out, _ := c.execSync(b, "echo", "b-answers"); out != "b-answers\n" {
		t.Errorf("exec in b after c's end: %q", out)
	}

	if len(criLeftInContainerd(pod)) == 0 {
		t.Errorf("no task or shim of the running pod %s found: the check for what is left cannot see it", pod)
	}
	c.removePod(pod, true)
	if left := criLeftInContainerd(ids...); len(left) > 0 {
		t.Errorf("left in containerd: %s", strings.Join(left, "; "))
	}
	if handler == criHandler {
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(criRoot, id)); err == nil {
				t.Errorf("runvirt state of %s left", id)
			}
			if procs := ctrdProcsOf(id); len(procs) > 0 {
				t.Errorf("processes of %s left: %v", id, procs)
			}
		}
		if m := mountsBelow(criRoot); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", criRoot, m)
		}
	}
	return &sharedPidResult{stopA: stA.ExitCode, reasonA: stA.Reason, exitC: stC.ExitCode}
}
