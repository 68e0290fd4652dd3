package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Clients (containerd's shim, conmon) are child subreapers: the stand-in
// whose pid they get from --pid-file is reparented to them when create
// exits, and they reap it for the exit status. The test process does the
// same, so it can check what a client would see.
func init() {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// reapStandIn waits for the stand-in pid (reparented to us) and returns
// its wait status.
func reapStandIn(t *testing.T, pid int, timeout time.Duration) syscall.WaitStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait for stand-in %d: %v", pid, err)
		}
		if got == pid {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("stand-in %d did not exit within %s", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// mustRun runs a runvirt verb that must succeed.
func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	out, err := e.command(args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("runvirt %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// mustFail runs a runvirt verb that must fail with a message containing want.
func (e *env) mustFail(want string, args ...string) {
	e.t.Helper()
	out, err := e.command(args...).CombinedOutput()
	if err == nil {
		e.t.Fatalf("runvirt %v succeeded, want an error containing %q\n%s", args, want, out)
	}
	if !strings.Contains(string(out), want) {
		e.t.Errorf("runvirt %v: error %q does not contain %q", args, out, want)
	}
}

// create runs `runvirt create` with stdout and stderr going to pipes that
// the stand-in inherits, and returns the stand-in's pid and the pipes.
func (e *env) create(id string) (pid int, stdout, stderr *os.File) {
	e.t.Helper()
	e.writeSpec()
	return e.createBundle(id, e.bundle)
}

// createBundle is create with the given bundle.
func (e *env) createBundle(id, bundle string) (pid int, stdout, stderr *os.File) {
	e.t.Helper()
	pidFile := filepath.Join(bundle, id+".pid")
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	// As clients do, send runvirt's own messages to a log: the stand-in
	// inherits stdout and stderr for the container alone.
	cmd := e.command("--log", filepath.Join(e.root, "runvirt.log"), "create", "--bundle", bundle, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = outW, errW
	err := cmd.Run()
	outW.Close()
	errW.Close()
	if err != nil {
		b, _ := io.ReadAll(errR)
		e.t.Fatalf("create %s: %v: %s", id, err, b)
	}
	return readPid(e.t, pidFile), outR, errR
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", `trap 'echo got-term; exit 9' TERM; echo started; echo to-stderr >&2; while true; do sleep 0.2; done`}
	pid, stdout, stderr := e.create("life")

	st, ok := e.state("life")
	if !ok || st.Status != "created" || st.Pid != pid || st.ID != "life" || st.Bundle != e.bundle {
		t.Fatalf("state after create: %+v (pid file %d)", st, pid)
	}
	// The monitor checked the VM through QMP once the agent was up.
	if b, _ := os.ReadFile(filepath.Join(e.root, "life", "monitor.log")); !strings.Contains(string(b), "qmp_status=running") {
		t.Errorf("monitor log lacks the QMP status: %s", b)
	}
	// The stand-in lives in the container's (new) network namespace.
	hostNS, _ := os.Readlink("/proc/self/ns/net")
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || ns == hostNS {
		t.Errorf("stand-in network namespace %q (host %q): %v", ns, hostNS, err)
	}
	if out := e.mustRun("list", "--format", "json"); !strings.Contains(out, `"life"`) {
		t.Errorf("list: %s", out)
	}

	e.mustRun("start", "life")
	e.mustFail("cannot start an already running container", "start", "life")
	if st, _ := e.state("life"); st.Status != "running" || st.Pid != pid {
		t.Fatalf("state after start: %+v", st)
	}
	line := make([]byte, 8)
	stdout.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "started\n" {
		t.Fatalf("stdout: %q %v", line, err)
	}
	eline := make([]byte, 10)
	stderr.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(stderr, eline); err != nil || string(eline) != "to-stderr\n" {
		t.Fatalf("stderr: %q %v", eline, err)
	}

	// exec in the foreground: output and exit status.
	out, err := e.command("exec", "life", "sh", "-c", "echo exec-out; hostname; exit 6").Output()
	if code := exitCode(err); code != 6 || !strings.Contains(string(out), "exec-out\nrunvirt\n") {
		t.Errorf("exec: exit %d, output %q", code, out)
	}
	// exec detached: its stand-in's pid in the pid file, its status when reaped.
	epidFile := filepath.Join(e.bundle, "exec.pid")
	e.mustRun("exec", "--detach", "--pid-file", epidFile, "life", "sh", "-c", "sleep 0.5; exit 4")
	if ws := reapStandIn(t, readPid(t, epidFile), 60*time.Second); !ws.Exited() || ws.ExitStatus() != 4 {
		t.Errorf("detached exec stand-in status %v, want exit 4", ws)
	}
	e.mustFail("executable file not found", "exec", "life", "no-such-cmd")

	var pids []int
	if err := json.Unmarshal([]byte(e.mustRun("ps", "--format", "json", "life")), &pids); err != nil || len(pids) == 0 {
		t.Errorf("ps: %v %v", pids, err)
	}

	e.mustFail("not stopped", "delete", "life")
	e.mustRun("kill", "life", "TERM")
	if ws := reapStandIn(t, pid, 60*time.Second); !ws.Exited() || ws.ExitStatus() != 9 {
		t.Errorf("stand-in status %v, want exit 9", ws)
	}
	rest, _ := io.ReadAll(stdout)
	if !strings.Contains(string(rest), "got-term") {
		t.Errorf("stdout after TERM: %q", rest)
	}
	if !e.waitStatus("life", "stopped", 10*time.Second) {
		t.Fatal("state does not say stopped")
	}
	if st, _ := e.state("life"); st.Pid != 0 {
		t.Errorf("a stopped container has pid 0, got %d", st.Pid)
	}
	e.mustFail("cannot exec in a stopped container", "exec", "life", "true")
	e.mustFail("cannot start a container that has stopped", "start", "life")
	e.mustRun("delete", "life")
	e.mustFail("does not exist", "state", "life")
}

// A stand-in exits the way its guest process did: killed by the same signal.
func TestStandInDiesOfTheSameSignal(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	pid, _, _ := e.create("sig")
	e.mustRun("start", "sig")
	e.mustRun("kill", "sig", "9")
	ws := reapStandIn(t, pid, 60*time.Second)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("stand-in status %v, want killed by SIGKILL", ws)
	}
	e.mustRun("delete", "sig")
}

// kill of a created container ends it without running its process.
func TestKillCreated(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", "echo must-not-run"}
	pid, stdout, _ := e.create("kc")
	e.mustRun("kill", "kc", "KILL")
	ws := reapStandIn(t, pid, 60*time.Second)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("stand-in status %v", ws)
	}
	if out, _ := io.ReadAll(stdout); len(out) != 0 {
		t.Errorf("the process ran: %q", out)
	}
	if !e.waitStatus("kc", "stopped", 10*time.Second) {
		t.Error("not stopped")
	}
	e.mustRun("delete", "kc")
}

// --console-socket receives the pty master; the window size set on it
// reaches the guest's terminal.
func TestConsoleSocket(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Terminal = true
	e.spec.Process.Args = []string{"sh", "-c", `tty; stty size; read x; echo "read:$x"`}
	e.writeSpec()
	sock := filepath.Join(e.root, "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *os.File, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 256), make([]byte, 64)
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			got <- nil
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		fds, _ := unix.ParseUnixRights(&msgs[0])
		got <- os.NewFile(uintptr(fds[0]), "console")
	}()
	e.mustFail("cannot allocate tty", "create", "--bundle", e.bundle, "tty")
	pidFile := filepath.Join(e.bundle, "tty.pid")
	e.mustRun("create", "--bundle", e.bundle, "--console-socket", sock, "--pid-file", pidFile, "tty")
	master := <-got
	if master == nil {
		t.Fatal("no console received")
	}
	defer master.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	e.mustRun("start", "tty")
	var out strings.Builder
	buf := make([]byte, 1024)
	deadline := time.Now().Add(60 * time.Second)
	wrote := false
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "read:") {
		master.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _ := master.Read(buf)
		out.Write(buf[:n])
		if !wrote && strings.Contains(out.String(), "33 111") {
			master.Write([]byte("typed\r"))
			wrote = true
		}
	}
	s := out.String()
	// The pty comes from the container's own devpts, as with runc.
	if !strings.Contains(s, "/dev/pts/0") || !strings.Contains(s, "33 111") || !strings.Contains(s, "read:typed") {
		t.Errorf("console output %q", s)
	}
	reapStandIn(t, readPid(t, pidFile), 60*time.Second)
	e.mustRun("delete", "tty")
}

func TestHooks(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	hook := func(name string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(dir, name)}}
	}
	e.spec.Hooks = &specs.Hooks{
		CreateRuntime:   []specs.Hook{hook("createRuntime")},
		CreateContainer: []specs.Hook{hook("createContainer")},
		StartContainer:  []specs.Hook{hook("startContainer")},
		Poststart:       []specs.Hook{hook("poststart")},
		Poststop:        []specs.Hook{hook("poststop")},
	}
	e.spec.Process.Args = []string{"true"}
	pid, _, _ := e.create("hooks")
	e.mustRun("start", "hooks")
	reapStandIn(t, pid, 60*time.Second)
	e.mustRun("delete", "hooks")
	for name, status := range map[string]string{"createRuntime": "created", "createContainer": "created", "startContainer": "created", "poststart": "running", "poststop": "stopped"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s hook did not run: %v", name, err)
			continue
		}
		var st specs.State
		if err := json.Unmarshal(b, &st); err != nil {
			t.Errorf("%s hook state %q: %v", name, b, err)
			continue
		}
		if st.ID != "hooks" || string(st.Status) != status || st.Bundle != e.bundle {
			t.Errorf("%s hook state %+v", name, st)
		}
		if name != "poststop" && st.Pid != pid {
			t.Errorf("%s hook got pid %d, want the stand-in's %d", name, st.Pid, pid)
		}
	}

	// A failing createRuntime hook fails create and leaves nothing behind.
	e.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook-broke >&2; exit 3"}}}}
	e.writeSpec()
	e.mustFail("hook-broke", "create", "--bundle", e.bundle, "badhook")
	e.mustFail("does not exist", "state", "badhook")
	// A hook past its timeout is killed and fails the operation.
	one := 1
	e.spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "30"}, Timeout: &one}}}
	e.writeSpec()
	start := time.Now()
	e.mustFail("timeout", "create", "--bundle", e.bundle, "slowhook")
	if time.Since(start) > 25*time.Second {
		t.Error("the hook timeout was not honoured")
	}
}

// Faults: whatever dies, state converges to stopped and delete cleans up.
// The workload ticks into a host directory: after a kill -9 of the stand-in
// it must stop by itself (the agent's lifeline), though nothing but `state`
// was asked of runvirt, and `state` only reads.
func TestFaults(t *testing.T) {
	e := newEnv(t)
	ticks := t.TempDir()
	e.spec.Mounts = append(e.spec.Mounts, specs.Mount{Destination: "/ticks", Type: "bind", Source: ticks, Options: []string{"rbind", "rw"}})
	for _, victim := range []string{"stand-in", "qemu", "monitor"} {
		t.Run(victim, func(t *testing.T) {
			id := "fault-" + victim
			tickFile := filepath.Join(ticks, id)
			e.spec.Process.Args = []string{"sh", "-c", "while :; do echo t >> /ticks/" + id + "; sleep 0.1; done"}
			pid, _, _ := e.create(id)
			e.mustRun("start", id)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if b, _ := os.ReadFile(tickFile); len(b) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the workload never ticked")
				}
			}
			var target int
			switch victim {
			case "stand-in":
				target = pid
			case "qemu":
				target = findProcess(t, "qemu-system", e.root+"/"+id+"/")
			case "monitor":
				target = findProcess(t, "monitor -- "+id, e.root)
			}
			syscall.Kill(target, syscall.SIGKILL)
			if !e.waitStatus(id, "stopped", 30*time.Second) {
				st, _ := e.state(id)
				t.Fatalf("after kill -9 of the %s, state is %q", victim, st.Status)
			}
			if victim != "stand-in" {
				// The stand-in noticed and ended as if its process was killed.
				ws := reapStandIn(t, pid, 30*time.Second)
				if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Errorf("stand-in status %v", ws)
				}
			} else {
				reapStandIn(t, pid, 30*time.Second)
				// Stopped means stopped: no tick after a grace period.
				time.Sleep(time.Second)
				before, _ := os.ReadFile(tickFile)
				time.Sleep(2 * time.Second)
				after, _ := os.ReadFile(tickFile)
				if len(after) != len(before) {
					t.Errorf("the workload still runs after its stand-in died and state said stopped (%d -> %d ticks)", len(before)/2, len(after)/2)
				}
			}
			e.mustRun("delete", id)
		})
	}
}

func findProcess(t *testing.T, cmdPart, alsoPart string) int {
	t.Helper()
	for _, p := range processesMentioning(alsoPart) {
		if strings.Contains(p.cmdline, cmdPart) {
			return p.pid
		}
	}
	t.Fatalf("no process with %q and %q", cmdPart, alsoPart)
	return 0
}

func TestBadTransitionsAndInput(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.mustFail("does not exist", "start", "nosuch")
	e.mustFail("does not exist", "state", "nosuch")
	e.mustFail("does not exist", "kill", "nosuch")
	e.mustFail("does not exist", "delete", "nosuch")
	e.mustRun("delete", "--force", "nosuch")
	e.mustFail("does not exist", "exec", "nosuch", "true")
	e.mustFail("invalid container id", "create", "--bundle", e.bundle, "../x")
	e.mustFail("unknown signal", "kill", "nosuch", "SIGNOPE")

	// Fatal errors reach --log as runc's JSON error line (what containerd
	// shows the user).
	logf := filepath.Join(e.root, "json.log")
	e.mustFail("does not exist", "--log", logf, "--log-format", "json", "start", "nosuch")
	b, _ := os.ReadFile(logf)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var last struct{ Level, Msg, Time string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "error" ||
		!strings.Contains(last.Msg, "does not exist") || last.Time == "" {
		t.Errorf("log file's last line %q: %v", lines[len(lines)-1], err)
	}

	pid, _, _ := e.create("bad")
	e.mustFail("already exists", "create", "--bundle", e.bundle, "bad")
	e.mustRun("start", "bad")
	e.mustFail("not stopped", "delete", "bad")
	e.mustRun("delete", "--force", "bad")
	ws := reapStandIn(t, pid, 30*time.Second)
	if !ws.Signaled() {
		t.Errorf("stand-in of a force-deleted container: %v", ws)
	}
	e.mustFail("does not exist", "state", "bad")

	// A spec version we cannot run.
	e.spec.Version = "2.0.0"
	e.writeSpec()
	e.mustFail("not supported", "create", "--bundle", e.bundle, "v2")
	e.spec.Version = "1.0.2"
	// A missing rootfs.
	e.spec.Root.Path = "no-rootfs"
	e.writeSpec()
	e.mustFail("no-rootfs", "create", "--bundle", e.bundle, "noroot")
}

// Parallel creates of different containers all succeed with sound state.
func TestParallelCreates(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.writeSpec()
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Not CombinedOutput: the stand-in inherits create's stdout and
			// stderr and keeps them open, as a container process does with runc.
			logf := filepath.Join(e.root, fmt.Sprintf("par%d.log", i))
			cmd := e.command("--log", logf, "create", "--bundle", e.bundle, fmt.Sprintf("par%d", i))
			if err := cmd.Run(); err != nil {
				b, _ := os.ReadFile(logf)
				errs[i] = fmt.Errorf("%v: %s", err, b)
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create par%d: %v", i, err)
		}
	}
	var states []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(e.mustRun("list", "--format", "json")), &states); err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, s := range states {
		if s.Status == "created" {
			created++
		}
	}
	if created != n {
		t.Errorf("list shows %d created containers, want %d: %+v", created, n, states)
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e.command("delete", "--force", fmt.Sprintf("par%d", i)).Run()
		}(i)
	}
	wg.Wait()
}

func exitCode(err error) int {
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestPauseResumeUpdateEvents(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	pid, _, _ := e.create("pr")
	e.mustFail("not running", "pause", "pr")
	e.mustRun("start", "pr")
	e.mustRun("pause", "pr")
	if st, _ := e.state("pr"); st.Status != "paused" {
		t.Errorf("after pause: %q", st.Status)
	}
	e.mustFail("paused", "exec", "pr", "true")
	e.mustFail("already paused", "pause", "pr")
	e.mustRun("resume", "pr")
	if st, _ := e.state("pr"); st.Status != "running" {
		t.Errorf("after resume: %q", st.Status)
	}
	e.mustFail("not paused", "resume", "pr")

	e.mustRun("update", "--pids-limit", "50", "--memory", "104857600", "pr")
	var ev struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			Memory struct {
				Usage struct{ Usage, Limit uint64 } `json:"usage"`
			} `json:"memory"`
			Pids struct{ Current, Limit uint64 } `json:"pids"`
		} `json:"data"`
	}
	out := e.mustRun("events", "--stats", "pr")
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("events --stats %q: %v", out, err)
	}
	if ev.Type != "stats" || ev.ID != "pr" || ev.Data.Pids.Limit != 50 || ev.Data.Pids.Current < 1 ||
		ev.Data.Memory.Usage.Limit != 104857600 || ev.Data.Memory.Usage.Usage == 0 {
		t.Errorf("stats after update: %s", out)
	}
	e.mustRun("delete", "--force", "pr")
	reapStandIn(t, pid, 30*time.Second)
	e.mustFail("does not exist", "events", "--stats", "pr")
}
