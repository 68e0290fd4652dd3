package clients

// The podman tests drive Debian's podman (4.3, with conmon) through a
// private configuration that setup-podman.sh writes
// (/run/runvirt-podman/containers.conf and storage.conf: storage under
// /var/lib/runvirt-podman, runvirt registered as the runtime "runvirt" by a
// wrapper that gives it --root /run/runvirt-podman/runtime and its config),
// and a locally built busybox image. They need what the containerd tests
// need (root, QEMU, `make`) and skip, or fail under
// RUNVIRT_REQUIRE_INTEGRATION=1, without it. Every container boots a VM: the
// tests keep the boots few.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const pdmImage = "localhost/runvirt-busybox:latest"

// requirePodman sets up podman's configuration (once) and skips or fails as
// clientSetup.require does.
func requirePodman(t *testing.T) {
	t.Helper()
	skipUnlessDebian(t, "podman is Debian's only (its tests run with the Debian set)")
	pdmConf = pdmSetup.require(t)
}

// pdmState is the directory of setup-podman.sh's configuration; runvirt's
// state is under STATE/runtime/<id>.
func pdmState() string { return filepath.Dir(pdmConf) }

func pdmCommand(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+pdmConf,
		"CONTAINERS_STORAGE_CONF="+filepath.Join(pdmState(), "storage.conf"))
	return cmd
}

// pdm runs `podman ARGS...` to completion with the given stdin (none if "").
func pdm(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, pdmCommand(args...), stdin)
}

// pdmTTY runs `podman ARGS...` on a new pty through the steps of runOnTTY.
func pdmTTY(t *testing.T, rows, cols uint16, steps []ttyStep, args ...string) (string, int) {
	t.Helper()
	return runOnTTY(t, pdmCommand(args...), rows, cols, steps)
}

// pdmName is a container name unique to this run.
func pdmName(name string) string {
	return fmt.Sprintf("rv-%s-%d", name, time.Now().UnixNano()%1000000)
}

// pdmContainer registers cleanup for the container that `podman run
// --cidfile FILE --name name` creates and returns the --cidfile to pass. At
// the end it removes the container if the test left it, then fails the test
// if anything of it survived: a container in podman, runvirt's state, a
// host process (conmon, monitor, QEMU, virtiofsd, stand-in).
func pdmContainer(t *testing.T, name string) string {
	cidfile := filepath.Join(t.TempDir(), "cid")
	t.Cleanup(func() {
		b, _ := os.ReadFile(cidfile)
		id := strings.TrimSpace(string(b))
		if pdmCommand("container", "exists", name).Run() == nil {
			t.Errorf("container %s left behind", name)
			pdmCommand("rm", "-f", "-t", "0", name).Run()
		}
		if out, _ := pdmCommand("ps", "-a", "--filter", "name="+name, "--format", "{{.Names}}").Output(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("podman ps -a still lists %s", name)
		}
		if id == "" {
			return
		}
		state := filepath.Join(pdmState(), "runtime", id)
		deadline := time.Now().Add(15 * time.Second)
		for {
			procs := pdmProcsOf(id)
			left := ctrdExists(state)
			if len(procs) == 0 && !left {
				return
			}
			if time.Now().After(deadline) {
				if len(procs) > 0 {
					t.Errorf("processes left behind: %v", procs)
				}
				if left {
					t.Errorf("runvirt state left behind: %s", state)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return cidfile
}

// pdmProcsOf lists the host processes of container id: every command line
// that names its 64-hex id (conmon -c ID, `runvirt monitor ID`, QEMU's
// -name runvirt-ID, the stand-in, virtiofsd's shared directory, podman's
// exit command).
func pdmProcsOf(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		if _, err := strconv.Atoi(en.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, id) {
			out = append(out, en.Name()+":"+cl)
		}
	}
	return out
}

// pdmRun is `podman run --runtime runvirt --network none` plus args.
func pdmRun(args ...string) []string {
	return append([]string{"run", "--runtime", "runvirt", "--network", "none"}, args...)
}

// pdmWaitLogs waits until `podman logs name` shows want (count times).
func pdmWaitLogs(t *testing.T, name, want string, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var out []byte
	for time.Now().Before(deadline) {
		out, _ = pdmCommand("logs", name).CombinedOutput()
		if strings.Count(string(out), want) >= count {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("podman logs %s: %q never showed %q %d times", name, out, want, count)
}

func pdmInspect(t *testing.T, name, format string) string {
	t.Helper()
	out, err := pdmCommand("inspect", "-f", format, name).Output()
	if err != nil {
		t.Fatalf("podman inspect %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// TestPodmanRun: `podman run --runtime runvirt --rm -i`: stdin, stdout and
// stderr kept apart, the exit status, a guest kernel, nothing left behind.
func TestPodmanRun(t *testing.T) {
	requirePodman(t)
	name := pdmName("run")
	cid := pdmContainer(t, name)
	r := pdm(t, "piped\n", pdmRun("--rm", "-i", "--cidfile", cid, "--name", name, pdmImage,
		"sh", "-c", `read x; echo "got $x"; echo to-stderr >&2; cat /proc/sys/kernel/random/boot_id; exit 3`)...)
	if r.code != 3 {
		t.Errorf("exit status %d, want 3; stderr: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "got piped" {
		t.Fatalf("stdout %q, want \"got piped\" and a boot id", r.stdout)
	}
	if lines[1] == hostBootID(t) {
		t.Errorf("the container ran on the host's kernel (boot id %s)", lines[1])
	}
	if strings.TrimSpace(r.stderr) != "to-stderr" {
		t.Errorf("stderr %q, want \"to-stderr\" alone", r.stderr)
	}
	if pdmCommand("container", "exists", name).Run() == nil {
		t.Errorf("--rm left the container")
	}
}

// TestPodmanRunMissingExecutable: podman turns the runtime's "not found"
// into 127, as with runc, and removes the container whose create failed.
func TestPodmanRunMissingExecutable(t *testing.T) {
	requirePodman(t)
	name := pdmName("noexe")
	cid := pdmContainer(t, name)
	r := pdm(t, "", pdmRun("--rm", "--cidfile", cid, "--name", name, pdmImage, "nosuchcmd")...)
	// podman quotes the runtime's message: exec: \"nosuchcmd\": ...
	want := `executable file not found in $PATH`
	if r.code != 127 || !strings.Contains(r.stderr, "nosuchcmd") || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 127 and %q", r.code, r.stderr, want)
	}
}

// TestPodmanRunTTY: `podman run -it`: an interactive shell on a terminal of
// the caller's size; the exit status comes back.
func TestPodmanRunTTY(t *testing.T) {
	requirePodman(t)
	name := pdmName("tty")
	cid := pdmContainer(t, name)
	out, code := pdmTTY(t, 45, 123, []ttyStep{
		{want: "# ", input: "[ -t 0 ] && echo is-a-\"\"tty; sleep 1; stty size\n"},
		{want: "45 123", input: "exit 7\n"},
	}, pdmRun("--rm", "-it", "--cidfile", cid, "--name", name, pdmImage, "sh")...)
	if code != 7 {
		t.Errorf("exit status %d, want 7", code)
	}
	if !strings.Contains(out, "is-a-tty") {
		t.Errorf("stdin is not a terminal: %q", out)
	}
	if strings.ContainsRune(out, 0) {
		t.Errorf("the terminal showed a NUL byte: %q", out)
	}
	// The exact bytes of a one-line workload: nothing before its output (a
	// stray NUL was reported here), the pty's CR LF after it.
	name = pdmName("ttyexact")
	cid = pdmContainer(t, name)
	out, code = pdmTTY(t, 24, 80, nil, pdmRun("--rm", "-it", "--cidfile", cid, "--name", name, pdmImage, "tty")...)
	if code != 0 || out != "/dev/pts/0\r\n" {
		t.Errorf("podman run -it tty: exit %d, terminal %q; want 0 and exactly %q", code, out, "/dev/pts/0\r\n")
	}
}

// TestPodmanDetached: `podman run -d`, `podman logs`, `podman exec` (with
// stdin, a missing executable), `podman stop` (SIGTERM, then SIGKILL after
// -t), `podman start` of the stopped container, `podman rm -f` of a running
// one.
func TestPodmanDetached(t *testing.T) {
	requirePodman(t)
	name := pdmName("det")
	cid := pdmContainer(t, name)
	script := `trap "echo got-hup" HUP; trap "echo got-term" TERM; echo ready; while true; do sleep 0.2; done`
	if r := pdm(t, "", pdmRun("-d", "--cidfile", cid, "--name", name, pdmImage, "sh", "-c", script)...); r.code != 0 {
		t.Fatalf("podman run -d: exit %d: %s", r.code, r.stderr)
	}
	pdmWaitLogs(t, name, "ready", 1)
	if s := pdmInspect(t, name, "{{.State.Status}} {{.State.Pid}}"); !strings.HasPrefix(s, "running ") || strings.HasSuffix(s, " 0") {
		t.Errorf("state %q, want running with the stand-in's pid", s)
	}

	// exec: stdin, stdout, stderr, exit status.
	r := pdm(t, "in\n", "exec", "-i", name, "sh", "-c", `read x; echo "exec got $x"; echo exec-err >&2; exit 7`)
	if r.code != 7 || strings.TrimSpace(r.stdout) != "exec got in" || strings.TrimSpace(r.stderr) != "exec-err" {
		t.Errorf("exec: exit %d stdout %q stderr %q; want 7, \"exec got in\", exec-err", r.code, r.stdout, r.stderr)
	}
	// podman exec maps "not found" to 127 (runc too).
	r = pdm(t, "", "exec", name, "nosuchcmd")
	if r.code != 127 || !strings.Contains(r.stderr, "nosuchcmd") || !strings.Contains(r.stderr, `executable file not found in $PATH`) {
		t.Errorf("exec of a missing executable: exit %d, stderr %q; want 127, executable file not found", r.code, r.stderr)
	}

	// A signal reaches the init process, which traps it.
	if r := pdm(t, "", "kill", "-s", "HUP", name); r.code != 0 {
		t.Fatalf("podman kill -s HUP: exit %d: %s", r.code, r.stderr)
	}
	pdmWaitLogs(t, name, "got-hup", 1)

	// stop: SIGTERM (trapped, ignored), then SIGKILL after 2 s.
	r = pdm(t, "", "stop", "-t", "2", name)
	if r.code != 0 {
		t.Fatalf("podman stop: exit %d: %s", r.code, r.stderr)
	}
	if r.took < 2*time.Second {
		t.Errorf("podman stop took %s: SIGKILL came before the 2 s timeout", r.took)
	}
	pdmWaitLogs(t, name, "got-term", 1)
	if s := pdmInspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); s != "exited 137" {
		t.Errorf("after stop: %q, want \"exited 137\"", s)
	}

	// start the stopped container: a new VM, the same logs.
	if r := pdm(t, "", "start", name); r.code != 0 {
		t.Fatalf("podman start: exit %d: %s", r.code, r.stderr)
	}
	pdmWaitLogs(t, name, "ready", 2)
	if r := pdm(t, "", "exec", name, "echo", "alive"); r.code != 0 || strings.TrimSpace(r.stdout) != "alive" {
		t.Errorf("exec after start: exit %d, stdout %q", r.code, r.stdout)
	}

	if r := pdm(t, "", "rm", "-f", "-t", "1", name); r.code != 0 {
		t.Errorf("podman rm -f: exit %d: %s", r.code, r.stderr)
	}
}

// TestPodmanDetachedExit: a detached container that exits by itself:
// `podman wait` reports its status, `podman rm` removes it whole.
func TestPodmanDetachedExit(t *testing.T) {
	requirePodman(t)
	name := pdmName("dexit")
	cid := pdmContainer(t, name)
	if r := pdm(t, "", pdmRun("-d", "--cidfile", cid, "--name", name, pdmImage, "sh", "-c", "echo bye; exit 4")...); r.code != 0 {
		t.Fatalf("podman run -d: exit %d: %s", r.code, r.stderr)
	}
	if r := pdm(t, "", "wait", name); r.code != 0 || strings.TrimSpace(r.stdout) != "4" {
		t.Errorf("podman wait: exit %d, stdout %q; want 4", r.code, r.stdout)
	}
	pdmWaitLogs(t, name, "bye", 1)
	// "exited", not "stopped" (podman's exited-but-not-cleaned-up): the
	// cleanup command conmon runs has deleted the container in runvirt.
	if s := pdmInspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); s != "exited 4" {
		t.Errorf("after exit: %q, want \"exited 4\"", s)
	}
	// Nothing of the exited container runs on: its VM stopped with it.
	b, _ := os.ReadFile(cid)
	id := strings.TrimSpace(string(b))
	var procs []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if procs = pdmProcsOf(id); len(procs) == 0 {
			break
		}
	}
	if len(procs) > 0 {
		t.Errorf("processes of the exited container: %v", procs)
	}
	if r := pdm(t, "", "rm", name); r.code != 0 {
		t.Errorf("podman rm: exit %d: %s", r.code, r.stderr)
	}
}

var (
	pdmSetup = &clientSetup{script: "setup-podman.sh"}
	pdmConf  string
)

// TestPodmanOOMKilled: a container whose init the guest's OOM killer kills
// exits 137 and conmon's OOM watcher sees the kill (in the stand-in's host
// cgroup); one that exits on its own is not seen as one. conmon 2.1
// (Debian's) writes its "oom" file in its working directory, which podman 4.3
// does not set, while podman reads it in the bundle: `podman inspect` then
// says OOMKilled false, with runc too (docs/podman.md). So the test runs
// podman in a directory of its own and looks there.
func TestPodmanOOMKilled(t *testing.T) {
	requirePodman(t)
	for _, c := range []struct {
		name, script string
		code         int
		oom          bool
	}{{"oom", memoryHog, 137, true}, {"nooom", "exit 3", 3, false}} {
		name := pdmName(c.name)
		cid := pdmContainer(t, name)
		cmd := pdmCommand(pdmRun("--rm", "--cidfile", cid, "--name", name, "-m", "32m", "--memory-swap", "32m", pdmImage, "sh", "-c", c.script)...)
		cmd.Dir = t.TempDir()
		r := runCmd(t, cmd, "")
		if r.code != c.code {
			t.Errorf("%s: exit %d, want %d: %s", c.name, r.code, c.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "oom")); (err == nil) != c.oom {
			t.Errorf("%s: conmon saw an OOM kill: %v, want %v", c.name, err == nil, c.oom)
		}
	}
}
