package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// sharePodPidNS makes spec join the pod sandbox's pid namespace.
func sharePodPidNS(spec *specs.Spec) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			spec.Linux.Namespaces[i].Path = agent.SandboxNamespace
		}
	}
}

// procsInPidNS lists the processes whose pid namespace is that of pid,
// with their command lines.
func procsInPidNS(t *testing.T, pid int) map[int]string {
	t.Helper()
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	out := map[int]string{}
	for _, d := range dirs {
		if ns, err := os.Readlink(d + "/ns/pid"); err != nil || ns != want {
			continue
		}
		var p int
		fmt.Sscanf(filepath.Base(d), "%d", &p)
		b, _ := os.ReadFile(d + "/cmdline")
		out[p] = strings.ReplaceAll(string(b), "\x00", " ")
	}
	return out
}

// TestSpawnPodInitUnseenUntilInside: a container that shares the pod
// sandbox's pid namespace. Nothing of the agent may ever be in that
// namespace: until start, the only new process there is the workload,
// stopped, already in the container's root and holding only its stdio.
// The workload sees the sandbox's pid namespace in its /proc, a member
// dropped before start never runs, and one killed before start is reaped.
func TestSpawnPodInitUnseenUntilInside(t *testing.T) {
	requiresRoot(t)
	sbRoot := busyboxRootfs(t)
	sb := newPipeStdio(t)
	sbProc, _, err := spawnAndStart("pod-sb", testSpec("sh", "-c", "echo ready; exec sleep 600"), sbRoot, sb.child)
	sb.closeChild()
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	defer func() {
		sbProc.Signal(unix.SIGKILL)
		reap(t, sbProc.Pid)
		sb.wg.Wait()
	}()
	if l := sb.waitLine(t); l != "ready" {
		t.Fatalf("sandbox said %q", l)
	}
	sbNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", sbProc.Pid))
	if err != nil {
		t.Fatal(err)
	}

	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", "readlink /proc/self/ns/pid; tr '\\0' ' ' < /proc/1/cmdline; echo")
	sharePodPidNS(spec)
	m := newPipeStdio(t)
	init, err := SpawnPodInit("pod-m", spec, root, m.child, sbProc.Pid)
	m.closeChild()
	if err != nil {
		t.Fatalf("SpawnPodInit: %v", err)
	}
	pid := init.Process.Pid
	procs := procsInPidNS(t, sbProc.Pid)
	if len(procs) != 2 || !strings.HasPrefix(procs[pid], "sh -c readlink") {
		t.Errorf("the sandbox's pid namespace holds %v, want the sandbox and the member's workload %d", procs, pid)
	}
	// Only the agent's root (here the host's) has the rootfs's path.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s/bin/busybox", pid, root)); err == nil {
		t.Error("the created workload's root is the agent's")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/bin/busybox", pid)); err != nil {
		t.Errorf("the created workload's root is not the container's: %v", err)
	}
	if fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); len(fds) != 3 {
		t.Errorf("the created workload holds %d fds, want its stdio only", len(fds))
	}
	if st := statusFields(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "State", "CapEff"); !strings.HasPrefix(st["State"], "t") {
		t.Errorf("the created workload is %q, want stopped until start", st["State"])
	}
	if err := init.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if ws := reap(t, pid); ws.ExitStatus() != 0 {
		t.Errorf("member: %v (stderr %s)", ws, m.stderr.String())
	}
	m.wg.Wait()
	lines := strings.Split(strings.TrimSpace(m.stdout.String()), "\n")
	if len(lines) != 2 || lines[0] != sbNS || !strings.HasPrefix(lines[1], "sleep 600") {
		t.Errorf("member saw %q, want its pid namespace %s and the sandbox's init as pid 1", lines, sbNS)
	}

	// Dropped before start: the workload never runs.
	dropped, err := SpawnPodInit("pod-dropped", func() *specs.Spec {
		s := testSpec("touch", "/ran")
		sharePodPidNS(s)
		return s
	}(), root, Stdio{}, sbProc.Pid)
	if err != nil {
		t.Fatalf("SpawnPodInit: %v", err)
	}
	dropped.Close()
	if ws := reap(t, dropped.Process.Pid); !ws.Signaled() {
		t.Errorf("member dropped before start ended with %v, want killed", ws)
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Error("the workload ran without a start")
	}

	// Killed before start: reaped, and its init child gone.
	killed, err := SpawnPodInit("pod-killed", func() *specs.Spec {
		s := testSpec("touch", "/ran")
		sharePodPidNS(s)
		return s
	}(), root, Stdio{}, sbProc.Pid)
	if err != nil {
		t.Fatalf("SpawnPodInit: %v", err)
	}
	killed.Process.Signal(unix.SIGKILL)
	if ws := reap(t, killed.Process.Pid); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("member killed before start ended with %v", ws)
	}
	if err := killed.Start(); err == nil {
		t.Error("Start of a member killed before start succeeded")
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Error("the workload ran without a start")
	}
}

// TestSpawnPodInitProcOptions: a /proc of the sandbox's pid namespace is
// the sandbox's own superblock, so options of its own are refused.
func TestSpawnPodInitProcOptions(t *testing.T) {
	requiresRoot(t)
	sbRoot := busyboxRootfs(t)
	sbProc := startSleepingSandbox(t, "pod-sb2", sbRoot)
	spec := testSpec("true")
	sharePodPidNS(spec)
	spec.Mounts[0].Options = []string{"nosuid", "hidepid=2"}
	_, err := SpawnPodInit("pod-opts", spec, busyboxRootfs(t), Stdio{}, sbProc.Pid)
	if err == nil || !strings.Contains(err.Error(), "hidepid=2") {
		t.Errorf("SpawnPodInit with hidepid: %v, want it refused", err)
	}
}

// TestSpawnPodInitTerminal: a terminal member in the sandbox's pid
// namespace gets its pty as the controlling terminal of its own session,
// as any terminal init does, though its init child forked it.
func TestSpawnPodInitTerminal(t *testing.T) {
	requiresRoot(t)
	sbProc := startSleepingSandbox(t, "pod-sb3", busyboxRootfs(t))
	spec := testSpec("sh", "-c", terminalScript+`; test -c /dev/console && echo console`)
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 37, Width: 101}
	sharePodPidNS(spec)
	init, err := SpawnPodInit("pod-tty", spec, busyboxRootfs(t), Stdio{}, sbProc.Pid)
	if err != nil {
		t.Fatalf("SpawnPodInit: %v", err)
	}
	if init.Console == nil {
		t.Fatal("no console")
	}
	defer init.Console.Close()
	out := readConsole(t, init.Console)
	if err := init.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ws := reap(t, init.Process.Pid)
	got := <-out
	want := "/dev/pts/0\n37 101\nisatty\nvia-dev-tty\nNSsid:\t"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "console\n") || ws.ExitStatus() != 0 {
		t.Errorf("terminal member said %q (status %v), want it to start with %q", got, ws, want)
	}
}

// TestSpawnPodInitSeccomp: under Docker's default profile, loaded before
// the fork under no_new_privs, the init child can still release its
// workload.
func TestSpawnPodInitSeccomp(t *testing.T) {
	requiresRoot(t)
	sbProc := startSleepingSandbox(t, "pod-sb4", busyboxRootfs(t))
	spec := testSpec("echo", "released")
	spec.Linux.Seccomp = dockerProfile()
	sharePodPidNS(spec)
	m := newPipeStdio(t)
	init, err := SpawnPodInit("pod-seccomp", spec, busyboxRootfs(t), m.child, sbProc.Pid)
	m.closeChild()
	if err != nil {
		t.Fatalf("SpawnPodInit: %v", err)
	}
	if err := init.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ws := reap(t, init.Process.Pid)
	m.wg.Wait()
	if ws.ExitStatus() != 0 || m.stdout.String() != "released\n" {
		t.Errorf("member under seccomp: %v, said %q (stderr %q)", ws, m.stdout.String(), m.stderr.String())
	}
}

// startSleepingSandbox starts a pod sandbox container that sleeps, in
// rootfs; the test's cleanup kills and reaps it.
func startSleepingSandbox(t *testing.T, id, rootfs string) *os.Process {
	t.Helper()
	p, _, err := spawnAndStart(id, testSpec("sleep", "600"), rootfs, Stdio{})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() {
		p.Signal(unix.SIGKILL)
		reap(t, p.Pid)
	})
	return p
}
