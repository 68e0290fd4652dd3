// Package integration runs the built runvirt binary end to end: real bundles,
// real QEMU VMs (TCG where there is no KVM), real clients.
//
// The tests need root, QEMU and the artefacts of `make` (bin/runvirt and
// build/guest/). Without them they skip and say why; with
// RUNVIRT_REQUIRE_INTEGRATION=1 (set by .ci/run) a missing prerequisite fails
// the run instead, so CI can never pass by skipping.
package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
	"github.com/runvirt/runvirt/runtime"
)

var (
	repoRoot   string
	runvirtBin string
	guestDir   string
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	runvirtBin = filepath.Join(repoRoot, "bin", "runvirt")
	guestDir = testutil.GuestDir(repoRoot)
	os.Exit(m.Run())
}

// requireVM skips (or, in CI, fails) unless a VM can be booted here.
func requireVM(t *testing.T) {
	t.Helper()
	testutil.RequiresVM(t, repoRoot)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func inPath(name string) bool { _, err := exec.LookPath(name); return err == nil }

// env is one test's runvirt environment: a state root, a config file and a
// bundle with a busybox rootfs.
type env struct {
	template bool     // sandboxes start from a template (withTemplate)
	ids      []string // every id given to create or run
	t        *testing.T
	root     string
	config   string
	bundle   string
	spec     *specs.Spec
}

type envOpt func(*envConfig)

type envConfig struct{ sharedFS, extra string }

func with9p(c *envConfig) { c.sharedFS = "9p" }

// withTemplate starts the sandboxes from a template (9p), kept in dir.
func withTemplate(dir string) envOpt {
	return func(c *envConfig) {
		c.sharedFS = "9p"
		c.extra += fmt.Sprintf("template = true\ntemplate_dir = %q\n", dir)
	}
}

func newEnv(t *testing.T, opts ...envOpt) *env {
	requireVM(t)
	c := envConfig{sharedFS: "virtio-fs"}
	for _, o := range opts {
		o(&c)
	}
	// A short root keeps the unix socket paths within their limit.
	root, err := os.MkdirTemp("/tmp", "rvit-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, bundle: t.TempDir(), template: strings.Contains(c.extra, "template = true")}
	e.config = filepath.Join(root, "config.toml")
	kernel, initrd := testutil.GuestImage(guestDir)
	cfg := fmt.Sprintf("kernel = %q\ninitrd = %q\naccel = \"auto\"\nshared_fs = %q\nboot_timeout = \"90s\"\n",
		kernel, initrd, c.sharedFS)
	// CI runs the suite once on each machine type; unset, the default.
	if m := os.Getenv("RUNVIRT_TEST_MACHINE"); m != "" {
		cfg += fmt.Sprintf("machine = %q\n", m)
	}
	cfg += c.extra
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	makeBusyboxRootfs(t, filepath.Join(e.bundle, "rootfs"))
	e.spec = defaultSpec()
	t.Cleanup(func() {
		if t.Failed() {
			// Don't let one failure leak into the next test.
			out, _ := e.command("list", "-q").Output()
			for _, id := range strings.Fields(string(out)) {
				e.command("delete", "--force", id).Run()
			}
		}
		e.checkNothingLeft()
		os.RemoveAll(root)
	})
	return e
}

// makeBusyboxRootfs builds a complete rootfs from the static busybox.
func makeBusyboxRootfs(t *testing.T, dir string) {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", name))
		}
	}
	os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "group"), []byte("root:x:0:\nuser:x:1000:\nextra:x:2000:user\n"), 0o644)
}

// defaultSpec is what `runc spec` writes, with the args left to the test.
func defaultSpec() *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: "1.0.2",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: []string{"sh"},
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "runvirt",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func (e *env) writeSpec() {
	b, err := json.MarshalIndent(e.spec, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.bundle, "config.json"), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// result is what one runvirt invocation did.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// command prepares `runvirt --root R --config C ARGS...`.
func (e *env) command(args ...string) *exec.Cmd {
	for i, a := range args {
		if (a == "create" || a == "run") && len(args) > i+1 {
			e.ids = append(e.ids, args[len(args)-1])
		}
	}
	full := append([]string{"--root", e.root, "--config", e.config}, args...)
	return exec.Command(runvirtBin, full...)
}

// run runs runvirt to completion with the given stdin.
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	cmd := e.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("runvirt %v: %v", args, err)
	}
	e.t.Logf("runvirt %v: exit %d in %s\nstdout: %q\nstderr: %q", args, r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// runArgs writes the spec with these process args and runs the container.
func (e *env) runArgs(id string, args ...string) result {
	e.t.Helper()
	e.spec.Process.Args = args
	e.writeSpec()
	return e.run("", "run", "--bundle", e.bundle, id)
}

// checkNothingLeft fails the test if any process, mount or state of this
// environment survived.
func (e *env) checkNothingLeft() {
	t := e.t
	t.Helper()
	// Processes: anything whose command line names our root.
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := processesMentioning(e.root)
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				syscall.Kill(p.pid, syscall.SIGKILL)
			}
			t.Errorf("processes left behind: %v", procs)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := mountsUnder(e.root); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
		for i := len(m) - 1; i >= 0; i-- {
			syscall.Unmount(m[i], syscall.MNT_DETACH)
		}
	}
	for _, id := range e.ids {
		if d := socketDir(e.root, id); exists(d) {
			t.Errorf("socket dir of %s left behind: %s", id, d)
			os.RemoveAll(d)
		}
	}
	ents, _ := os.ReadDir(e.root)
	for _, en := range ents {
		if en.Type().IsDir() {
			t.Errorf("state left behind under %s: %s", e.root, en.Name())
		}
	}
}

type proc struct {
	pid     int
	cmdline string
}

func (p proc) String() string { return fmt.Sprintf("%d:%s", p.pid, p.cmdline) }

func processesMentioning(s string) []proc {
	var out []proc
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		var pid int
		if _, err := fmt.Sscanf(en.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, s) {
			out = append(out, proc{pid, cl})
		}
	}
	return out
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// state returns `runvirt state ID` decoded, or ok=false if it failed.
func (e *env) state(id string) (st struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}, ok bool) {
	out, err := e.command("state", "--", id).Output()
	if err != nil {
		return st, false
	}
	if err := json.Unmarshal(out, &st); err != nil {
		e.t.Fatalf("state output %q: %v", out, err)
	}
	return st, true
}

// waitStatus polls `runvirt state` until the container has status want.
func (e *env) waitStatus(id, want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, ok := e.state(id); ok && st.Status == want {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// socketDir is where a container's sockets are.
func socketDir(root, id string) string { return runtime.Dir{Root: root, ID: id}.SocketDir() }

// appendConfig adds lines to the test's config.
func (e *env) appendConfig(lines string) {
	e.t.Helper()
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines); err != nil {
		e.t.Fatal(err)
	}
}

// checkRestored fails the test unless sandbox id was restored from a
// template (its monitor log says so).
func (e *env) checkRestored(id string) {
	e.t.Helper()
	mon, _ := os.ReadFile(filepath.Join(e.root, id, "monitor.log"))
	if !strings.Contains(string(mon), "vm restored from a template") {
		e.t.Errorf("%s was not restored from a template; monitor log:\n%s", id, mon)
	}
}
