// Package clients runs real container clients (containerd's ctr, ...) on
// top of the built runvirt, end to end: each container boots a real VM.
//
// The containerd tests need root, QEMU, the artefacts of `make` (bin/runvirt
// and build/guest/) and containerd, which setup-containerd.sh installs from
// Debian's package and starts as a separate instance
// (/run/runvirt-containerd/containerd.sock) with a locally built busybox
// image. Without a prerequisite they skip and say why; with
// RUNVIRT_REQUIRE_INTEGRATION=1 (set by .ci/run) they fail instead.
package clients

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ctrdImage = "localhost/busybox:runvirt"

// ctrdRepo is the repository root (the tests run in integration/clients).
func ctrdRepo() string {
	wd, _ := os.Getwd()
	return filepath.Dir(filepath.Dir(wd))
}

func ctrdRunvirt() string { return filepath.Join(ctrdRepo(), "bin", "runvirt") }

// requireContainerd sets up containerd (once) and skips or fails as clientSetup.require does.
func requireContainerd(t *testing.T) {
	t.Helper()
	ctrdSock = ctrdSetup.require(t)
}

func ctrdExists(p string) bool { _, err := os.Stat(p); return err == nil }

func ctrCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(clients().ctrPath(), args...)
	cmd.Env = append(os.Environ(), "CONTAINERD_ADDRESS="+ctrdSock)
	return cmd
}

// ctr runs `ctr ARGS...` to completion with the given stdin (none if "").
func ctr(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, ctrCommand(args...), stdin)
}

// ctrTTY runs `ctr ARGS...` on a new pty of the given size and returns what
// the terminal showed and ctr's exit status.
func ctrTTY(t *testing.T, rows, cols uint16, args ...string) (string, int) {
	t.Helper()
	return runOnTTY(t, ctrCommand(args...), rows, cols, nil)
}

// ctrdID is a container id unique to this run.
func ctrdID(name string) string {
	return fmt.Sprintf("rv-%s-%d", name, time.Now().UnixNano()%1000000)
}

// ctrdCleanup removes the container if the test left it, then fails the
// test if anything of it survived: a task, a container, runvirt's state, a
// process (monitor, QEMU, virtiofsd, stand-in).
func ctrdCleanup(t *testing.T, id string) {
	t.Cleanup(func() {
		if ctrCommand("containers", "info", id).Run() == nil {
			t.Errorf("container %s left behind", id)
			ctrCommand("task", "kill", "-s", "SIGKILL", id).Run()
			time.Sleep(time.Second)
			ctrCommand("task", "delete", "--force", id).Run()
			ctrCommand("containers", "delete", id).Run()
		}
		ctrdCheckGone(t, id)
	})
}

// ctrdCheckGone fails the test if runvirt's state or a host process of
// container id (in containerd's default namespace) is still there 10 s on.
func ctrdCheckGone(t *testing.T, id string) {
	state := filepath.Join("/run/containerd/runc/default", id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := ctrdProcsOf(id)
		_, err := os.Stat(state)
		if len(procs) == 0 && os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			if len(procs) > 0 {
				t.Errorf("processes left behind: %v", procs)
			}
			if err == nil {
				t.Errorf("runvirt state left behind: %s", state)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctrdProcsOf lists the host processes of container id's sandbox.
func ctrdProcsOf(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "/runc/default/"+id+"/") || strings.Contains(cl, "/runc/k8s.io/"+id+"/") || strings.Contains(cl, "-name runvirt-"+id+" ") ||
			strings.Contains(cl, " monitor "+id) || strings.Contains(cl, " stand-in "+id) {
			out = append(out, en.Name()+":"+cl)
		}
	}
	return out
}

func hostBootID(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestContainerdRun: `ctr run --runc-binary runvirt --rm`: stdin, stdout and
// stderr kept apart, the exit status, a guest kernel, nothing left behind.
func TestContainerdRun(t *testing.T) {
	requireContainerd(t)
	id := ctrdID("run")
	ctrdCleanup(t, id)
	r := ctr(t, "piped\n", "run", "--runc-binary", ctrdRunvirt(), "--rm", ctrdImage, id,
		"sh", "-c", `read x; echo "got $x"; echo to-stderr >&2; cat /proc/sys/kernel/random/boot_id; exit 3`)
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
	if !strings.Contains(r.stderr, "to-stderr") || strings.Contains(r.stdout, "to-stderr") {
		t.Errorf("stderr %q / stdout %q: stderr not kept apart", r.stderr, r.stdout)
	}
	if r := ctr(t, "", "containers", "info", id); r.code == 0 {
		t.Errorf("--rm left the container")
	}
}

// TestContainerdRunTTY: `ctr run -t`: the workload has a terminal of the
// caller's size, and its exit status comes back.
func TestContainerdRunTTY(t *testing.T) {
	requireContainerd(t)
	id := ctrdID("tty")
	ctrdCleanup(t, id)
	out, code := ctrTTY(t, 45, 123, "run", "--runc-binary", ctrdRunvirt(), "--rm", "-t", ctrdImage, id,
		"sh", "-c", `[ -t 0 ] && [ -t 1 ] && echo is-a-tty; sleep 1; stty size; exit 5`)
	if code != 5 {
		t.Errorf("exit status %d, want 5", code)
	}
	if !strings.Contains(out, "is-a-tty") {
		t.Errorf("stdin/stdout are not a terminal: %q", out)
	}
	if !strings.Contains(out, "45 123") {
		t.Errorf("window size not propagated (want \"45 123\"): %q", out)
	}
}

// TestContainerdDetached: `ctr run -d`, then `ctr task exec` (with and
// without -t, and -d), `ctr task ps`, `ctr task kill` with several signals,
// SIGKILL, `ctr task delete`, `ctr containers delete`.
func TestContainerdDetached(t *testing.T) {
	requireContainerd(t)
	id := ctrdID("det")
	ctrdCleanup(t, id)
	logf := filepath.Join(t.TempDir(), "out.log")
	script := `trap "echo got-hup" HUP; trap "echo got-usr1" USR1; trap "echo got-term" TERM; echo ready; while true; do sleep 0.2; done`
	if r := ctr(t, "", "run", "--runc-binary", ctrdRunvirt(), "-d", "--log-uri", "file://"+logf, ctrdImage, id, "sh", "-c", script); r.code != 0 {
		t.Fatalf("ctr run -d: exit %d: %s", r.code, r.stderr)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("container output: %q", b)
		}
	}()
	if r := ctr(t, "", "task", "ls"); !strings.Contains(r.stdout, id) || !ctrdTaskStatus(r.stdout, id, "RUNNING") {
		t.Errorf("task ls: %q, want %s RUNNING", r.stdout, id)
	}
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(logf); strings.Contains(string(b), want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		b, _ := os.ReadFile(logf)
		t.Fatalf("container output %q never showed %q", b, want)
	}
	waitLog("ready")

	// exec without a terminal: stdin, stdout, stderr, exit status.
	r := ctr(t, "in\n", "task", "exec", "--exec-id", "plain", id, "sh", "-c", `read x; echo "exec got $x"; echo exec-err >&2; exit 7`)
	if r.code != 7 || strings.TrimSpace(r.stdout) != "exec got in" || !strings.Contains(r.stderr, "exec-err") {
		t.Errorf("exec: exit %d stdout %q stderr %q; want 7, \"exec got in\", exec-err", r.code, r.stdout, r.stderr)
	}
	// exec with a terminal. ctr sets the window size with a resize after
	// the process started (with runc too), so the process waits a moment
	// before it reads the size: a fast guest could read it first.
	out, code := ctrTTY(t, 30, 100, "task", "exec", "-t", "--exec-id", "tty", id, "sh", "-c", `[ -t 0 ] && echo exec-tty; sleep 1; stty size; exit 9`)
	if code != 9 || !strings.Contains(out, "exec-tty") || !strings.Contains(out, "30 100") {
		t.Errorf("exec -t: exit %d, terminal %q; want 9, exec-tty, \"30 100\"", code, out)
	}
	// A detached exec shows up in ps.
	if r := ctr(t, "", "task", "exec", "-d", "--exec-id", "sleeper", id, "sleep", "1000"); r.code != 0 {
		t.Errorf("exec -d: exit %d: %s", r.code, r.stderr)
	}
	r = ctr(t, "", "task", "ps", id)
	// The init's own `sleep 0.2` comes and goes: count on the init and the
	// exec'd sleep only.
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")) - 1; r.code != 0 || n < 2 {
		t.Errorf("task ps: exit %d, %d processes (want at least the init and the exec'd sleep): %q", r.code, n, r.stdout)
	}
	if r := ctr(t, "", "task", "kill", "--exec-id", "sleeper", "-s", "SIGKILL", id); r.code != 0 {
		t.Errorf("kill --exec-id: exit %d: %s", r.code, r.stderr)
	}

	// Signals reach the init process; it traps them.
	for _, s := range []struct{ sig, want string }{{"SIGHUP", "got-hup"}, {"USR1", "got-usr1"}, {"15", "got-term"}} {
		if r := ctr(t, "", "task", "kill", "-s", s.sig, id); r.code != 0 {
			t.Fatalf("task kill -s %s: exit %d: %s", s.sig, r.code, r.stderr)
		}
		waitLog(s.want)
	}
	if r := ctr(t, "", "task", "delete", id); r.code == 0 {
		t.Errorf("task delete of a running task succeeded")
	}
	if r := ctr(t, "", "task", "kill", "-s", "SIGKILL", id); r.code != 0 {
		t.Fatalf("task kill -s SIGKILL: exit %d: %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ctrdTaskStatus(ctr(t, "", "task", "ls").stdout, id, "STOPPED") {
		if time.Now().After(deadline) {
			t.Fatalf("task not STOPPED 30 s after SIGKILL")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// ctr task delete exits 0 and warns with the exit code.
	if r := ctr(t, "", "task", "delete", id); r.code != 0 || !strings.Contains(r.stderr, "exit code 137") {
		t.Errorf("task delete: exit %d, stderr %q; want 0 and \"exit code 137\"", r.code, r.stderr)
	}
	if r := ctr(t, "", "containers", "delete", id); r.code != 0 {
		t.Errorf("containers delete: exit %d: %s", r.code, r.stderr)
	}
}

// ctrdTaskStatus reports whether `ctr task ls` output lists id with status.
func ctrdTaskStatus(ls, id, status string) bool {
	for _, line := range strings.Split(ls, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id && f[2] == status {
			return true
		}
	}
	return false
}

// TestContainerdConfigRuntime: runvirt chosen by containerd's config rather
// than a ctr flag. ctr 1.6 cannot select a CRI runtime entry (its
// runc.v2 options come only from --runc-binary), so the config route for ctr
// is the v1 runtime's `runtime = ".../runvirt"` that setup-containerd.sh
// writes.
func TestContainerdConfigRuntime(t *testing.T) {
	skipUnlessDebian(t, "containerd 2 has no v1 runtime, and its ctr takes the runc shim's options from --runc-binary only (docs/containerd.md)")
	requireContainerd(t)
	id := ctrdID("v1")
	ctrdCleanup(t, id)
	r := ctr(t, "", "run", "--rm", "--runtime", "io.containerd.runtime.v1.linux", ctrdImage, id,
		"sh", "-c", "cat /proc/sys/kernel/random/boot_id; exit 6")
	if r.code != 6 {
		t.Errorf("exit status %d, want 6; stderr: %s", r.code, r.stderr)
	}
	if got := strings.TrimSpace(r.stdout); got == "" || got == hostBootID(t) {
		t.Errorf("boot id %q: not a guest's", got)
	}
}

var (
	ctrdSetup = &clientSetup{script: "setup-containerd.sh"}
	ctrdSock  string
)
