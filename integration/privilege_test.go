package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runvirt/runvirt/runtime"
)

// The first id of the default qemu_uid_range (config.toml.example).
const firstQEMUUID = 1879048192

// procIDs reads the Uid, Gid and Groups lines of /proc/PID/status.
func procIDs(t *testing.T, pid int) (uids, gids []int, groups string, seccomp string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	ints := func(s string) (out []int) {
		for _, f := range strings.Fields(s) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Uid":
			uids = ints(v)
		case "Gid":
			gids = ints(v)
		case "Groups":
			groups = strings.TrimSpace(v)
		case "Seccomp":
			seccomp = strings.TrimSpace(v)
		}
	}
	return uids, gids, groups, seccomp
}

// QEMU runs as a uid and gid of its own per sandbox, with no supplementary
// group, under its seccomp filter, and the sandbox works as before: the
// workload's output and exit code, exec, QMP (the monitor's status query),
// kill and delete. A second sandbox gets another uid, and a QEMU that
// dropped root still dies with its monitor.
func TestQEMUUnprivileged(t *testing.T) {
	e := newEnv(t)

	r := e.runArgs("fg", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || !strings.HasSuffix(r.stderr, "err\n") {
		t.Fatalf("run as an unprivileged qemu: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	e.spec.Process.Args = []string{"sleep", "600"}
	qemuOf := func(id string) int {
		pid := findProcess(t, "qemu-system", e.root+"/"+id+"/")
		uids, gids, groups, seccomp := procIDs(t, pid)
		for i := range uids {
			if uids[i] < firstQEMUUID || uids[i] != uids[0] || gids[i] != uids[0] {
				t.Errorf("qemu of %s: Uid %v Gid %v, want one id of qemu_uid_range, the same for all", id, uids, gids)
				break
			}
		}
		if groups != "" || seccomp != "2" {
			t.Errorf("qemu of %s: Groups %q Seccomp %q, want none and 2 (filter)", id, groups, seccomp)
		}
		return pid
	}
	e.create("a")
	e.mustRun("start", "a")
	e.create("b")
	e.mustRun("start", "b")
	qa, qb := qemuOf("a"), qemuOf("b")
	ua, _, _, _ := procIDs(t, qa)
	ub, _, _, _ := procIDs(t, qb)
	if ua[0] == ub[0] {
		t.Errorf("two sandboxes' qemus share uid %d", ua[0])
	}
	// QMP works: the monitor queried QEMU's status once the agent was up.
	if b, _ := os.ReadFile(filepath.Join(e.root, "a", "monitor.log")); !strings.Contains(string(b), "qmp_status=running") ||
		!strings.Contains(string(b), "qemu runs unprivileged") {
		t.Errorf("monitor log: %s", b)
	}
	if out, err := e.command("exec", "a", "sh", "-c", "echo exec-out; exit 7").CombinedOutput(); err == nil ||
		err.(*exec.ExitError).ExitCode() != 7 || string(out) != "exec-out\n" {
		t.Errorf("exec: %v %q", err, out)
	}
	// Nothing QEMU was handed is open to other users.
	for _, p := range []string{filepath.Join(e.root, "a", "console.log"), socketDir(e.root, "a"), runtime.UIDLeaseDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v, want no access for group or others", p, fi.Mode(), err)
		}
	}

	// virtiofsd serves the share from its own sandbox: other mount, pid
	// and net namespaces than the host's.
	served := false
	for _, p := range processesMentioning(filepath.Join(e.root, "a", "shared")) {
		if !strings.Contains(p.cmdline, "virtiofsd") {
			continue
		}
		other := 0
		for _, ns := range []string{"mnt", "pid", "net"} {
			mine, _ := os.Readlink("/proc/self/ns/" + ns)
			its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", p.pid, ns))
			if err == nil && its != mine {
				other++
			}
		}
		t.Logf("virtiofsd %d: %d of its mnt, pid, net namespaces are its own", p.pid, other)
		served = served || other == 3
	}
	if !served {
		t.Error("no virtiofsd of sandbox a runs in namespaces of its own")
	}

	// kill -9 of b's monitor takes its (unprivileged) QEMU down with it.
	syscall.Kill(findProcess(t, "monitor -- b", e.root), syscall.SIGKILL)
	gone := false
	for t0 := time.Now(); time.Since(t0) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		if !alive(qb) {
			gone = true
			break
		}
	}
	if !gone {
		t.Errorf("qemu %d outlived its monitor", qb)
	}
	e.mustRun("kill", "a", "KILL")
	if !e.waitStatus("a", "stopped", 30*time.Second) {
		t.Error("a did not stop")
	}
	e.mustRun("delete", "a")
	e.waitStatus("b", "stopped", 30*time.Second)
	e.mustRun("delete", "--force", "b")
	if alive(qa) {
		t.Errorf("qemu %d of a survived delete", qa)
	}
}

// A kernel that QEMU's unprivileged user cannot read is refused before
// QEMU starts, with the fix, and leaves nothing behind.
func TestQEMUUnprivilegedUnreadableKernel(t *testing.T) {
	e := newEnv(t)
	private := filepath.Join(e.root, "private") // e.root is 0700
	os.Mkdir(private, 0o755)
	kernel := filepath.Join(private, "vmlinux")
	os.WriteFile(kernel, []byte("not a kernel"), 0o644)
	b, _ := os.ReadFile(e.config)
	e.setConfig("kernel = "+strconv.Quote(configValue(string(b), "kernel")), "kernel = "+strconv.Quote(kernel))
	r := e.runArgs("unreadable", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "cannot read "+kernel) || !strings.Contains(r.stderr, `qemu_user = \"root\"`) {
		t.Errorf("unreadable kernel: exit %d, %q", r.code, r.stderr)
	}
	os.RemoveAll(private)
}

func configValue(text, key string) string {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok && k == key {
			s, _ := strconv.Unquote(v)
			return s
		}
	}
	return ""
}

// alive says whether pid runs: a zombie (reparented to this test, a
// subreaper) has exited.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
