package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func hostRelease(t *testing.T) string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// The workload runs in the guest kernel, not the host's.
func TestRunPrintsGuestKernel(t *testing.T) {
	e := newEnv(t)
	r := e.runArgs("uname", "uname", "-r")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want, err := os.ReadFile(filepath.Join(guestDir, "kernel.release"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(r.stdout)
	if got != strings.TrimSpace(string(want)) {
		t.Errorf("guest kernel %q, want the guest image's %q", got, want)
	}
	if got == hostRelease(t) {
		t.Errorf("the workload saw the host's kernel %q", got)
	}
}

func TestRunExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		// A signal the shell dies of, as a child: 128+N through the shell.
		{"sh -c 'kill -9 $$'; exit $?", 137},
	} {
		r := e.runArgs("codes", "sh", "-c", tc.script)
		if r.code != tc.want {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.script, r.code, tc.want, r.stderr)
		}
	}
}

func TestRunStdioSeparateAndStdin(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", "read line; echo out:$line; echo err:$line >&2"}
	e.writeSpec()
	r := e.run("hello\n", "run", "--bundle", e.bundle, "stdio")
	if r.code != 0 {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
	if r.stdout != "out:hello\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "err:hello\n") || strings.Contains(r.stderr, "out:") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestRunProcessSpecApplied(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Env = append(e.spec.Process.Env, "GREETING=hi there")
	e.spec.Process.Cwd = "/home/user"
	e.spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}
	e.spec.Hostname = "guesthost"
	r := e.runArgs("procspec", "sh", "-c", `echo "env=$GREETING"; echo "cwd=$(pwd)"; echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; echo "host=$(hostname)"`)
	if r.code != 0 {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
	for _, want := range []string{"env=hi there\n", "cwd=/home/user\n", "uid=1000 gid=1000 groups=1000 2000\n", "host=guesthost\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %q", want, r.stdout)
		}
	}
}

func TestRunWritesReachTheHost(t *testing.T) {
	for _, fs := range []struct {
		name string
		opts []envOpt
	}{{"virtio-fs", nil}, {"9p", []envOpt{with9p}}} {
		t.Run(fs.name, func(t *testing.T) {
			e := newEnv(t, fs.opts...)
			data := t.TempDir()
			os.WriteFile(filepath.Join(data, "in.txt"), []byte("from-host"), 0o644)
			ro := t.TempDir()
			os.WriteFile(filepath.Join(ro, "ro.txt"), []byte("read-only"), 0o644)
			e.spec.Mounts = append(e.spec.Mounts,
				specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw"}},
				specs.Mount{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
			)
			r := e.runArgs("share", "sh", "-c",
				`echo written > /written.txt && cat /data/in.txt && echo && echo back > /data/out.txt && cat /ro/ro.txt && echo && if echo x > /ro/new 2>/dev/null; then echo ro-writable; else echo ro-refused; fi`)
			if r.code != 0 {
				t.Fatalf("exit %d: %q", r.code, r.stderr)
			}
			if got, _ := os.ReadFile(filepath.Join(e.bundle, "rootfs", "written.txt")); string(got) != "written\n" {
				t.Errorf("file written in the container's rootfs: host sees %q", got)
			}
			if got, _ := os.ReadFile(filepath.Join(data, "out.txt")); string(got) != "back\n" {
				t.Errorf("file written in the bind mount: host sees %q", got)
			}
			for _, want := range []string{"from-host\n", "read-only\n", "ro-refused\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q: %q", want, r.stdout)
				}
			}
			if exists(filepath.Join(ro, "new")) {
				t.Error("a write reached the read-only bind mount's source")
			}
		})
	}
}

func TestRunReadonlyRootfs(t *testing.T) {
	e := newEnv(t)
	e.spec.Root.Readonly = true
	e.spec.Mounts = append(e.spec.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"})
	r := e.runArgs("rofs", "sh", "-c", `if touch /newfile 2>/dev/null; then echo root-writable; else echo root-refused; fi; touch /tmp/ok && echo tmpfs-ok`)
	if r.code != 0 {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "root-refused") || !strings.Contains(r.stdout, "tmpfs-ok") {
		t.Errorf("output %q", r.stdout)
	}
	if exists(filepath.Join(e.bundle, "rootfs", "newfile")) {
		t.Error("a write reached the read-only rootfs")
	}
}

func TestRunMissingExecutable(t *testing.T) {
	e := newEnv(t)
	r := e.runArgs("missing", "/bin/no-such-program")
	if r.code == 0 {
		t.Fatal("a missing executable must fail")
	}
	if !strings.Contains(r.stderr, "no such file or directory") || !strings.Contains(r.stderr, "/bin/no-such-program") {
		t.Errorf("stderr should name the program and say no such file or directory: %q", r.stderr)
	}
	r = e.runArgs("missing2", "no-such-program")
	if r.code == 0 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// A workload killed by SIGKILL (from `runvirt kill`, as a client would
// send it) makes `runvirt run` exit with 137, as runc reports it.
func TestRunKilledBySIGKILL(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.writeSpec()
	cmd := e.command("run", "--bundle", e.bundle, "killme")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if !e.waitStatus("killme", "running", 120*time.Second) {
		cmd.Process.Kill()
		t.Fatal("the container never ran")
	}
	if out, err := e.command("kill", "killme", "KILL").CombinedOutput(); err != nil {
		t.Fatalf("kill: %v %q", err, out)
	}
	select {
	case err := <-exited:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 137 {
			t.Errorf("exit %d, want 137; stderr %q", code, errb.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("runvirt run did not exit after its workload was killed")
	}
	// kill of a container that is gone names the problem.
	out, err := e.command("kill", "killme", "KILL").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not exist") {
		t.Errorf("kill after the end: %v %q", err, out)
	}
}

// SIGTERM and SIGINT sent to `runvirt run` reach the workload.
func TestRunForwardsSignals(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		e.spec.Process.Args = []string{"sh", "-c", `trap 'echo got-signal; exit 7' TERM INT; echo ready; while true; do sleep 0.2; done`}
		e.writeSpec()
		cmd := e.command("run", "--bundle", e.bundle, "sig")
		var out, errb bytes.Buffer
		pr, pw, _ := os.Pipe()
		cmd.Stdout, cmd.Stderr = pw, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		buf := make([]byte, 6)
		pr.SetReadDeadline(time.Now().Add(120 * time.Second))
		if _, err := pr.Read(buf); err != nil || string(buf) != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("workload did not get ready: %q %v %q", buf, err, errb.String())
		}
		cmd.Process.Signal(sig)
		done := make(chan struct{})
		go func() { out.ReadFrom(pr); close(done) }()
		err := cmd.Wait()
		<-done
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 7 || !strings.Contains(out.String(), "got-signal") {
			t.Errorf("%v: exit %d, output %q, stderr %q", sig, code, out.String(), errb.String())
		}
	}
}

func TestRunBadInputLeavesNothing(t *testing.T) {
	e := newEnv(t)
	// No config.json.
	r := e.run("", "run", "--bundle", e.bundle, "noconfig")
	if r.code == 0 || !strings.Contains(r.stderr, "config.json") {
		t.Errorf("missing config.json: exit %d, %q", r.code, r.stderr)
	}
	e.spec.Process.Args = []string{"true"}
	e.writeSpec()
	for _, id := range []string{"../escape", "a/b", strings.Repeat("x", 100)} {
		r = e.run("", "run", "--bundle", e.bundle, id)
		if r.code == 0 || !strings.Contains(r.stderr, "invalid container id") {
			t.Errorf("id %q: exit %d, %q", id, r.code, r.stderr)
		}
	}
	os.WriteFile(filepath.Join(e.bundle, "config.json"), []byte(`{"ociVersion": "1.0.2", "root": `), 0o644)
	r = e.run("", "run", "--bundle", e.bundle, "malformed")
	if r.code == 0 || !strings.Contains(r.stderr, "config.json") {
		t.Errorf("malformed config.json: exit %d, %q", r.code, r.stderr)
	}
	bad := filepath.Join(e.root, "bad.toml")
	os.WriteFile(bad, []byte("machine = \"pc\"\n"), 0o644)
	cmd := exec.Command(runvirtBin, "--root", e.root, "--config", bad, "run", "--bundle", e.bundle, "badcfg")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "machine") {
		t.Errorf("bad config: %v %q", err, out)
	}
	os.Remove(bad)
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	r := e.run("", "check")
	if r.code != 0 {
		t.Fatalf("check failed on a host that runs VMs: %q %q", r.stdout, r.stderr)
	}
	for _, want := range []string{"kvm", "qemu", "ok   qemu-seccomp", "ok   mount-api", "ok   openat2", "ok   qemu-user", "tun", "kernel", "initrd", "will use:", "accel="} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q: %q", want, r.stdout)
		}
	}
	bad := filepath.Join(e.root, "nokernel.toml")
	os.WriteFile(bad, []byte("kernel = \"/nonexistent/vmlinuz\"\n"), 0o644)
	defer os.Remove(bad)
	out, err := exec.Command(runvirtBin, "--config", bad, "check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/vmlinuz") {
		t.Errorf("check without a kernel must fail naming it: %v %q", err, out)
	}
	// --version names the guest kernel and the agent the VMs boot.
	if r := e.run("", "--version"); r.code != 0 || !strings.Contains(r.stdout, "guest kernel: ") ||
		!strings.Contains(r.stdout, "agent: ") || strings.Contains(r.stdout, "unknown") {
		t.Errorf("--version: exit %d %q", r.code, r.stdout)
	}
	// A debug shell that is asked for is checked for too.
	e.setConfig("accel = ", "debug_shell = true\naccel = ")
	if r := e.run("", "check"); r.code != 0 || !strings.Contains(r.stdout, "ok   debug-shell") {
		t.Errorf("check with debug_shell: exit %d %q", r.code, r.stdout)
	}
}

// The guest's console carries what the agent writes, on microvm as on q35:
// a guest kernel whose UART sends nothing from user space would also leave
// the agent blocked once the port's buffer filled.
func TestGuestConsoleLog(t *testing.T) {
	for _, machine := range []string{"q35", "microvm"} {
		t.Run(machine, func(t *testing.T) {
			e := newEnv(t)
			e.setMachine(machine)
			e.spec.Process.Args = []string{"sleep", "600"}
			e.create("con")
			b, _ := os.ReadFile(filepath.Join(e.root, "con", "console.log"))
			if !strings.Contains(string(b), "agent booted") {
				t.Errorf("the guest console lacks the agent's log:\n%s", b)
			}
			e.mustRun("delete", "--force", "con")
		})
	}
}
