package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMain lets SpawnInit and SpawnExec re-execute the test binary as the
// container child.
//
// The test process is a child subreaper, as the agent is the guest's PID 1:
// an exec's workload is forked by the exec child, which exits, and must
// become the test's child to be waited for.
func TestMain(m *testing.M) {
	MaybeRunChild()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "set child subreaper:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

const busybox = testutil.Busybox

// requiresRoot stops tests that create namespaces and mounts, and run
// busybox in them, where they cannot.
func requiresRoot(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t, "create namespaces and mounts")
	testutil.RequiresBusybox(t)
}

// busyboxRootfs builds a minimal root filesystem and fails the test if the
// test leaves anything mounted on the host.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	// Only this test's own directories count: other tests and programs on
	// the host may mount and unmount meanwhile.
	testDir := filepath.Dir(tmp)
	t.Cleanup(func() {
		if left := mountsBelow(t, testDir); left != "" {
			t.Errorf("mounts leaked on the host:\n%s", left)
		}
	})
	root := filepath.Join(tmp, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app"} {
		mustMkdir(t, filepath.Join(root, d))
	}
	// Traversable by the unprivileged users of the tests.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "id", "hostname", "ls", "sleep", "touch",
		"pwd", "grep", "test", "stat", "tr", "mkdir", "head", "readlink", "true", "tty", "stty"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// mountsBelow lists this process's mounts at or below dir.
func mountsBelow(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

var defaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// testSpec mimics `runc spec` with the given command.
func testSpec(args ...string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "ctr-host",
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
				"/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// result is what a finished container process left behind.
type result struct {
	stdout, stderr string
	status         unix.WaitStatus
}

// pipeStdio gives a child pipes as stdio and collects what it writes.
type pipeStdio struct {
	child          Stdio
	stdinW         *os.File
	stdout, stderr bytes.Buffer
	wg             sync.WaitGroup
	lines          chan string // stdout, line by line, as it comes
}

func newPipeStdio(t *testing.T) *pipeStdio {
	t.Helper()
	var files [6]*os.File
	for i := 0; i < 6; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		files[i], files[i+1] = r, w
	}
	s := &pipeStdio{
		child:  Stdio{Stdin: files[0], Stdout: files[3], Stderr: files[5]},
		stdinW: files[1],
		lines:  make(chan string, 100),
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(s.lines)
		var line []byte
		buf := make([]byte, 4096)
		for {
			n, err := files[2].Read(buf)
			s.stdout.Write(buf[:n])
			for _, c := range buf[:n] {
				if c == '\n' {
					s.lines <- string(line)
					line = line[:0]
				} else {
					line = append(line, c)
				}
			}
			if err != nil {
				files[2].Close()
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		io.Copy(&s.stderr, files[4])
		files[4].Close()
	}()
	return s
}

// closeChild drops our copies of the child's ends (after the spawn).
func (s *pipeStdio) closeChild() {
	s.child.Stdin.Close()
	s.child.Stdout.Close()
	s.child.Stderr.Close()
	s.stdinW.Close()
}

// waitLine waits for the next stdout line.
func (s *pipeStdio) waitLine(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			t.Fatalf("stdout closed; stderr: %s", s.stderr.String())
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for output")
	}
	return ""
}

// reap waits for pid, as the agent's reaper would.
func reap(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	var ws unix.WaitStatus
	start := time.Now()
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		// An exec's workload is the test's child once the exec child that
		// forked it has exited.
		if errors.Is(err, unix.ECHILD) && time.Since(start) < 5*time.Second {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("wait4 %d: %v", pid, err)
		}
		return ws
	}
}

// reapAny reaps a child that a failed spawn left behind.
func reapAny(t *testing.T) {
	t.Helper()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return
	}
}

// spawnAndStart creates a container init and starts it at once. A failed
// start leaves the child to reap, as a failed create does.
func spawnAndStart(id string, spec *specs.Spec, rootfs string, stdio Stdio) (*os.Process, *os.File, error) {
	init, err := SpawnInit(id, spec, rootfs, stdio)
	if err != nil {
		return nil, nil, err
	}
	if err := init.Start(); err != nil {
		if init.Console != nil {
			init.Console.Close()
		}
		return nil, nil, err
	}
	return init.Process, init.Console, nil
}

// startReadyInit starts a container init whose workload prints "ready"
// and then stays (exec sleep), and waits for that line; the test's cleanup
// kills and reaps it.
func startReadyInit(t *testing.T, id string, spec *specs.Spec, rootfs string) (*os.Process, *pipeStdio) {
	t.Helper()
	init := newPipeStdio(t)
	ip, _, err := spawnAndStart(id, spec, rootfs, init.child)
	init.closeChild()
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnInit: %v", err)
	}
	t.Cleanup(func() {
		ip.Signal(unix.SIGKILL)
		reap(t, ip.Pid)
		init.wg.Wait()
	})
	if l := init.waitLine(t); l != "ready" {
		t.Fatalf("init said %q", l)
	}
	return ip, init
}

// runInit runs a container init to completion.
func runInit(t *testing.T, id string, spec *specs.Spec, rootfs string) result {
	t.Helper()
	s := newPipeStdio(t)
	p, _, err := spawnAndStart(id, spec, rootfs, s.child)
	s.closeChild()
	if err != nil {
		reapAny(t)
		s.wg.Wait()
		t.Fatalf("SpawnInit: %v (stderr: %s)", err, s.stderr.String())
	}
	ws := reap(t, p.Pid)
	s.wg.Wait()
	return result{s.stdout.String(), s.stderr.String(), ws}
}

func TestSpawnInitProcess(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	oom := 500
	spec := testSpec("sh", "-c", `hostname; pwd; echo "$FOO"; echo "$HOME"; echo $$; cat /proc/1/comm; `+
		`ulimit -n; cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status; `+
		`cat /proc/sys/kernel/shm_rmid_forced; umask; test -c /dev/null && test -L /dev/ptmx && echo devices`)
	spec.Process.Cwd = "/work/dir" // missing: created as runc does
	spec.Process.Env = append(spec.Process.Env, "FOO=bar baz")
	spec.Process.OOMScoreAdj = &oom
	spec.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1"}
	r := runInit(t, "proc-test", spec, root)
	want := "ctr-host\n/work/dir\nbar baz\n/root\n1\nsh\n1024\n500\nNoNewPrivs:\t1\n1\n0022\ndevices\n"
	if r.stdout != want || r.status.ExitStatus() != 0 {
		t.Errorf("got stdout %q (status %v, stderr %q), want %q", r.stdout, r.status, r.stderr, want)
	}
	if _, err := os.Stat(filepath.Join(root, "work/dir")); err != nil {
		t.Errorf("cwd not created in the rootfs: %v", err)
	}
}

func TestSpawnInitExitStatus(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	r := runInit(t, "exit-test", testSpec("sh", "-c", "echo oops >&2; exit 3"), root)
	if r.status.ExitStatus() != 3 || r.stderr != "oops\n" {
		t.Errorf("status %v stderr %q, want 3 and oops", r.status, r.stderr)
	}
}

// statusFields returns the named lines of /proc/self/status output.
func statusFields(out string, names ...string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				m[k] = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	return m
}

func capMask(t *testing.T, names ...string) string {
	t.Helper()
	var m uint64
	for _, n := range names {
		c, err := capNumber(n)
		if err != nil {
			t.Fatal(err)
		}
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

func TestSpawnInitRootCapabilities(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	r := runInit(t, "caps-root", testSpec("cat", "/proc/self/status"), root)
	got := statusFields(r.stdout, "Uid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
	def := capMask(t, defaultCaps...)
	want := map[string]string{"Uid": "0 0 0 0", "CapInh": capMask(t), "CapPrm": def, "CapEff": def, "CapBnd": def, "CapAmb": capMask(t)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (stderr %q)", k, got[k], v, r.stderr)
		}
	}
}

func TestSpawnInitUserAndAmbient(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", "cat /proc/self/status; echo home=$HOME; umask; pwd")
	u := uint32(0o077)
	spec.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 20}, Umask: &u}
	spec.Process.Cwd = "/home/app"
	caps := []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: defaultCaps, Effective: caps, Permitted: caps, Inheritable: caps, Ambient: caps,
	}
	r := runInit(t, "caps-user", spec, root)
	got := statusFields(r.stdout, "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
	amb := capMask(t, caps...)
	// A non-root process keeps only its ambient set across execve.
	want := map[string]string{
		"Uid": "1000 1000 1000 1000", "Gid": "1001 1001 1001 1001", "Groups": "10 20",
		"CapInh": amb, "CapPrm": amb, "CapEff": amb, "CapAmb": amb, "CapBnd": capMask(t, defaultCaps...),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (stderr %q)", k, got[k], v, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "home=/home/app\n0077\n/home/app\n") {
		t.Errorf("HOME/umask/cwd wrong in %q", r.stdout)
	}
}

func TestSpawnInitMounts(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("single file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", `cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null || echo ro-refused; `+
		`echo written > /mnt/rw/new && echo rw-ok; cat /etc/single; `+
		`touch /tmp/t && echo tmpfs-ok; touch /rootfile 2>/dev/null || echo rootfs-ro; `+
		`grep -c ' /tmp tmpfs ' /proc/mounts; grep ' /sys/fs/cgroup ' /proc/mounts | grep -c cgroup2`)
	spec.Root.Readonly = true
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: src, Options: []string{"rbind", "ro", "nosuid"}},
		specs.Mount{Destination: "/mnt/rw", Type: "none", Source: src, Options: []string{"rbind", "rw", "rprivate"}},
		specs.Mount{Destination: "/etc/single", Type: "bind", Source: file, Options: []string{"bind", "ro"}},
	)
	r := runInit(t, "mounts", spec, root)
	want := "from host\nro-refused\nrw-ok\nsingle file\ntmpfs-ok\nrootfs-ro\n1\n1\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q (stderr %q)", r.stdout, want, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(src, "new")); err != nil || string(b) != "written\n" {
		t.Errorf("write through the rw bind mount: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "rootfile")); err == nil {
		t.Error("write reached a read-only rootfs")
	}
}

func TestSpawnInitMaskedAndReadonlyPaths(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	mustMkdir(t, filepath.Join(root, "secret-dir"))
	for _, f := range []string{"secret-dir/key", "etc/secret", "ro-dir/f"} {
		mustMkdir(t, filepath.Join(root, filepath.Dir(f)))
		if err := os.WriteFile(filepath.Join(root, f), []byte("sensitive\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := testSpec("sh", "-c", `echo "[$(cat /etc/secret)]"; echo "[$(ls /secret-dir)]"; `+
		`echo "[$(cat /proc/timer_list 2>&1 | head -c 1)]"; touch /ro-dir/x 2>/dev/null || echo ro-refused; `+
		`echo 1 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null || echo procsys-ro; touch /ok && echo rootfs-rw`)
	spec.Linux.MaskedPaths = append(spec.Linux.MaskedPaths, "/etc/secret", "/secret-dir", "/does/not/exist")
	spec.Linux.ReadonlyPaths = append(spec.Linux.ReadonlyPaths, "/ro-dir", "/missing-ro")
	r := runInit(t, "masked", spec, root)
	want := "[]\n[]\n[]\nro-refused\nprocsys-ro\nrootfs-rw\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q (stderr %q)", r.stdout, want, r.stderr)
	}
}

func TestSpawnInitExecErrors(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	for args0, want := range map[string]string{
		"nosuchcmd":   `exec: "nosuchcmd": executable file not found in $PATH`,
		"/bin/nope":   `exec: "/bin/nope": stat /bin/nope: no such file or directory`,
		"/etc/passwd": `exec: "/etc/passwd": permission denied`,
	} {
		s := newPipeStdio(t)
		// At create, as runc reports it, not at start.
		init, err := SpawnInit("exec-err", testSpec(args0), root, s.child)
		s.closeChild()
		reapAny(t)
		s.wg.Wait()
		var ee *ExecError
		if init != nil || !errors.As(err, &ee) || err.Error() != want {
			t.Errorf("SpawnInit(%s) = %v, %v; want ExecError %q", args0, init, err, want)
		}
	}
}

func TestSpawnInitSetupError(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/mnt", Type: "bind", Source: "/no/such/source"})
	s := newPipeStdio(t)
	_, err := SpawnInit("setup-err", spec, root, s.child)
	s.closeChild()
	reapAny(t)
	s.wg.Wait()
	var ee *ExecError
	if err == nil || errors.As(err, &ee) || !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "mount /mnt") {
		t.Errorf("SpawnInit with a missing bind source = %v, want a mount error wrapping ENOENT", err)
	}
}

func TestSpawnExec(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	spec := testSpec("sh", "-c", "echo data > /tmp/shared; echo ready; exec sleep 1000")
	ip, _ := startReadyInit(t, "exec-test", spec, root)

	proc := &specs.Process{
		Args: []string{"sh", "-c", `cat shared; hostname; echo $$; cat /proc/1/comm; grep -E '^(Uid|CapEff)' /proc/self/status; ` +
			`for ns in mnt pid net uts ipc; do readlink /proc/self/ns/$ns; done`},
		Env:          []string{"PATH=/bin"},
		Cwd:          "/tmp",
		User:         specs.User{UID: 1000, GID: 1000},
		Capabilities: spec.Process.Capabilities,
	}
	ex := newPipeStdio(t)
	ep, _, err := SpawnExec("exec-test", ip.Pid, spec, proc, ex.child)
	ex.closeChild()
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnExec: %v", err)
	}
	ws := reap(t, ep.Pid)
	ex.wg.Wait()
	lines := strings.Split(strings.TrimSpace(ex.stdout.String()), "\n")
	if len(lines) < 6 || lines[0] != "data" || lines[1] != "ctr-host" || lines[3] != "sleep" || ws.ExitStatus() != 0 {
		t.Fatalf("exec output %q (status %v, stderr %q)", ex.stdout.String(), ws, ex.stderr.String())
	}
	if pid, err := strconv.Atoi(lines[2]); err != nil || pid <= 1 || pid == ep.Pid {
		t.Errorf("exec pid inside the container = %q, want a small pid of the container's namespace (host pid %d)", lines[2], ep.Pid)
	}
	if lines[4] != "Uid:\t1000\t1000\t1000\t1000" {
		t.Errorf("exec uid line %q", lines[4])
	}
	nsOut := strings.Join(lines[6:], "\n")
	for _, ns := range []string{"mnt", "pid", "net", "uts", "ipc"} {
		want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", ip.Pid, ns))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(nsOut, want) {
			t.Errorf("exec is not in the init's %s namespace %s: %q", ns, want, nsOut)
		}
	}

	// The executable is looked up in the container, with runc's wording.
	proc.Args = []string{"nosuchcmd"}
	ex = newPipeStdio(t)
	_, _, err = SpawnExec("exec-test", ip.Pid, spec, proc, ex.child)
	ex.closeChild()
	ex.wg.Wait()
	var ee *ExecError
	if !errors.As(err, &ee) || err.Error() != `exec: "nosuchcmd": executable file not found in $PATH` {
		t.Errorf("SpawnExec(nosuchcmd) = %v", err)
	}
	// Reap the failed exec child only: the init is still running.
	if ee != nil {
		var wsx unix.WaitStatus
		for i := 0; i < 100; i++ {
			if pid, _ := unix.Wait4(-1, &wsx, unix.WNOHANG, nil); pid > 0 && pid != ip.Pid {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestSpawnInitCgroup checks that a container is cloned into its cgroup and
// sees that cgroup as its root, in /proc/self/cgroup and at its cgroup
// mount, whether or not the spec asks for a cgroup namespace (docker on a
// cgroup v1 host never does).
func TestSpawnInitCgroup(t *testing.T) {
	requiresRoot(t)
	const unified = "/sys/fs/cgroup/unified"
	old := cgroupRoot
	if !cgroupsEnabled() {
		cgroupRoot = unified
		if !cgroupsEnabled() {
			cgroupRoot = old
			t.Skip("skipping, no cgroup2 mount at /sys/fs/cgroup or " + unified)
		}
	}
	defer func() { cgroupRoot = old }()
	parentExisted := true
	if _, err := os.Stat(filepath.Join(cgroupRoot, cgroupParent)); err != nil {
		parentExisted = false
	}
	root := busyboxRootfs(t)
	for _, specAsks := range []bool{true, false} {
		t.Run(fmt.Sprintf("cgroupns-in-spec=%v", specAsks), func(t *testing.T) {
			s := newPipeStdio(t)
			spec := testSpec("sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs; echo ready; exec sleep 1000")
			if !specAsks {
				spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
					return ns.Type == specs.CgroupNamespace
				})
			}
			p, _, err := spawnAndStart("cg-test", spec, root, s.child)
			s.closeChild()
			if err != nil {
				reapAny(t)
				t.Fatalf("SpawnInit: %v", err)
			}
			var lines []string
			for l := s.waitLine(t); l != "ready"; l = s.waitLine(t) {
				lines = append(lines, l)
			}
			procs, err := os.ReadFile(filepath.Join(cgroupDir("cg-test"), "cgroup.procs"))
			p.Signal(unix.SIGKILL)
			reap(t, p.Pid)
			s.wg.Wait()
			if err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(p.Pid) {
				t.Errorf("cgroup.procs = %q, %v; want %d", procs, err, p.Pid)
			}
			// The cgroup namespace is rooted at the container's cgroup.
			if !slices.Contains(lines, "0::/") {
				t.Errorf("/proc/self/cgroup in the container = %q, want a 0::/ line", lines)
			}
			// The mount shows the container's cgroup: its init (pid 1 in its
			// pid namespace) is in the mount's root, as in no other cgroup.
			if !slices.Contains(lines, "1") {
				t.Errorf("/proc/self/cgroup and /sys/fs/cgroup/cgroup.procs in the container = %q, want pid 1 in the mount's cgroup.procs", lines)
			}
			if err := RemoveCgroup("cg-test"); err != nil {
				t.Error(err)
			}
		})
	}
	if !parentExisted {
		os.Remove(filepath.Join(cgroupRoot, cgroupParent))
	}
}

// mountinfoEntry is one line of /proc/self/mountinfo, in the parts the tests
// look at.
type mountinfoEntry struct {
	root, mountpoint string
	optional         []string // shared:N, master:N, unbindable, ...
}

func parseMountinfo(out string) map[string]mountinfoEntry {
	m := map[string]mountinfoEntry{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 7 {
			continue
		}
		e := mountinfoEntry{root: f[3], mountpoint: f[4]}
		for _, o := range f[6:] {
			if o == "-" {
				break
			}
			e.optional = append(e.optional, o)
		}
		m[e.mountpoint] = e // the last mount on a path is the visible one
	}
	return m
}

func hasPrefixed(opts []string, prefix string) bool {
	return slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, prefix) })
}

// sharedSource makes a directory that is a shared mount of its own peer
// group, so that a slave bound from it shows a master:N.
func sharedSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, src, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(src, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	for _, p := range []uintptr{unix.MS_PRIVATE, unix.MS_SHARED} {
		if err := unix.Mount("", src, "", p, ""); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestSpawnInitMountPropagation mounts with each propagation option as the
// conformance suite's mounts test does: bind mounts without a type, whose
// propagation change must be a mount(2) call of its own after the bind.
func TestSpawnInitMountPropagation(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	src := sharedSource(t) // after busyboxRootfs: unmounted before its leak check
	spec := testSpec("cat", "/proc/self/mountinfo")
	want := map[string]func([]string) bool{
		"shared":      func(o []string) bool { return hasPrefixed(o, "shared:") },
		"rshared":     func(o []string) bool { return hasPrefixed(o, "shared:") },
		"slave":       func(o []string) bool { return hasPrefixed(o, "master:") && !hasPrefixed(o, "shared:") },
		"rslave":      func(o []string) bool { return hasPrefixed(o, "master:") && !hasPrefixed(o, "shared:") },
		"private":     func(o []string) bool { return len(o) == 0 },
		"rprivate":    func(o []string) bool { return len(o) == 0 },
		"unbindable":  func(o []string) bool { return slices.Equal(o, []string{"unbindable"}) },
		"runbindable": func(o []string) bool { return slices.Equal(o, []string{"unbindable"}) },
	}
	for prop := range want {
		bind := "bind"
		if strings.HasPrefix(prop, "r") {
			bind = "rbind"
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: "/mnt/" + prop, Source: src,
			Options: []string{"nosuid", "strictatime", "mode=755", "size=1k", bind, prop},
		})
	}
	r := runInit(t, "propagation", spec, root)
	if r.status.ExitStatus() != 0 {
		t.Fatalf("status %v, stderr %q", r.status, r.stderr)
	}
	mounts := parseMountinfo(r.stdout)
	for prop, ok := range want {
		e, found := mounts["/mnt/"+prop]
		if !found {
			t.Errorf("%s: no mount at /mnt/%s in\n%s", prop, prop, r.stdout)
			continue
		}
		if !ok(e.optional) {
			t.Errorf("%s: mount has propagation %q", prop, e.optional)
		}
		// What runtimetest matches a bind mount by.
		if filepath.Base(e.root) != filepath.Base(src) {
			t.Errorf("%s: mount root %s, want one named %s", prop, e.root, filepath.Base(src))
		}
	}
}

// TestSpawnInitWaitsForStart: SpawnInit returns an init that is set up (its
// mounts and hostname are there for an exec to see) but has not run its
// workload; Start runs it.
func TestSpawnInitWaitsForStart(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	s := newPipeStdio(t)
	spec := testSpec("sh", "-c", "echo ran > /ran; echo ran")
	init, err := SpawnInit("created", spec, root, s.child)
	s.closeChild()
	if err != nil {
		reapAny(t)
		s.wg.Wait()
		t.Fatalf("SpawnInit: %v", err)
	}
	started := false
	defer func() {
		if !started {
			init.Process.Signal(unix.SIGKILL)
			init.Close()
			reap(t, init.Process.Pid)
		}
	}()
	proc := &specs.Process{
		Args:         []string{"sh", "-c", `hostname; grep -c ' /tmp tmpfs ' /proc/mounts; test -e /ran || echo not-ran`},
		Env:          []string{"PATH=/bin"},
		Cwd:          "/",
		Capabilities: spec.Process.Capabilities,
	}
	ex := newPipeStdio(t)
	ep, _, err := SpawnExec("created", init.Process.Pid, spec, proc, ex.child)
	ex.closeChild()
	if err != nil {
		t.Fatalf("SpawnExec into the created init: %v", err)
	}
	reap(t, ep.Pid)
	ex.wg.Wait()
	if got := ex.stdout.String(); got != "ctr-host\n1\nnot-ran\n" {
		t.Errorf("exec in the created container said %q (stderr %q), want its hostname, /tmp and no /ran", got, ex.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Fatal("the workload ran before Start")
	}
	started = true
	if err := init.Start(); err != nil {
		reap(t, init.Process.Pid)
		t.Fatalf("Start: %v", err)
	}
	ws := reap(t, init.Process.Pid)
	s.wg.Wait()
	if s.stdout.String() != "ran\n" || ws.ExitStatus() != 0 {
		t.Errorf("started init said %q (status %v, stderr %q)", s.stdout.String(), ws, s.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err != nil {
		t.Errorf("the workload did not run: %v", err)
	}
}

// TestSpawnInitClosedBeforeStart: an init whose agent ends are dropped
// without a start exits without running its workload.
func TestSpawnInitClosedBeforeStart(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	init, err := SpawnInit("closed", testSpec("touch", "/ran"), root, Stdio{})
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnInit: %v", err)
	}
	init.Close()
	if ws := reap(t, init.Process.Pid); ws.Signaled() || ws.ExitStatus() == 0 {
		t.Errorf("init closed before start ended with %v, want a failure exit", ws)
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Error("the workload ran without a start")
	}
}
