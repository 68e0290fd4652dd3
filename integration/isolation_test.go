package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// allCaps is every capability the guest kernel knows: a root process with
// them all, as `docker run --privileged` would have.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// A root process with every capability in the container reaches nothing of
// the host: not its processes, mounts, network devices or files, not
// /dev/kvm, not the runvirt binary, and not another sandbox's VM. What it
// can reach of its VM (the shared directory) holds its own sandbox only.
func TestIsolationFromTheHost(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: allCaps, Effective: allCaps, Permitted: allCaps,
	}
	e.spec.Process.NoNewPrivileges = false
	e.spec.Linux.MaskedPaths, e.spec.Linux.ReadonlyPaths = nil, nil

	// The other sandbox leaves a marker in its rootfs.
	other := filepath.Join(t.TempDir(), "other")
	makeBusyboxRootfs(t, filepath.Join(other, "rootfs"))
	s := defaultSpec()
	s.Process.Args = []string{"sh", "-c", "echo marker-of-the-other-vm > /tmp/other-marker; cat /proc/sys/kernel/random/boot_id; sleep 600"}
	writeSpecTo(t, other, s)
	_, otherOut, _ := e.createBundle("other", other)
	e.mustRun("start", "other")
	otherBoot := make([]byte, 37)
	if _, err := otherOut.Read(otherBoot); err != nil {
		t.Fatal(err)
	}

	hostBoot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	self, _ := os.Executable()
	script := strings.Join([]string{
		`echo "boot=$(cat /proc/sys/kernel/random/boot_id)"`,
		// Every process it can see, with its command line.
		`for p in /proc/[0-9]*; do echo "proc=$(tr '\0' ' ' < $p/cmdline 2>/dev/null)"; done`,
		// Network devices.
		`for n in /sys/class/net/*; do echo "netdev=${n##*/}"; done`,
		// /dev/kvm: made by hand, it opens nothing.
		`mknod /tmp/kvm c 10 232 && (exec 3</tmp/kvm) 2>/dev/null && echo kvm=OPENED || echo kvm=unusable`,
		// The runvirt binaries and the other VM's marker, anywhere.
		`find / -xdev \( -name 'runvirt*' -o -name other-marker \) 2>/dev/null | sed 's/^/found=/'`,
		// The VM's shared directory, mounted by hand: this sandbox only.
		`mkdir -p /mnt/share && (mount -t virtiofs runvirt /mnt/share || mount -t 9p -o trans=virtio runvirt /mnt/share) && ls /mnt/share | sed 's/^/share=/'`,
		`cat /proc/self/mountinfo | sed 's/^/mount=/'`,
	}, "; ")
	r := e.runArgs("iso", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	get := func(key string) []string {
		var out []string
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, key+"="); ok {
				out = append(out, v)
			}
		}
		return out
	}
	boot := get("boot")
	if len(boot) != 1 || boot[0] == strings.TrimSpace(string(hostBoot)) || boot[0] == strings.TrimSpace(string(otherBoot)) {
		t.Errorf("boot id %v: the host's is %s, the other VM's %s", boot, hostBoot, otherBoot)
	}
	for _, p := range get("proc") {
		if strings.HasPrefix(p, `sh -c echo "boot=`) {
			continue // the script itself
		}
		for _, host := range []string{"qemu", "runvirt", "virtiofsd", filepath.Base(self), "sleep 600"} {
			if strings.Contains(p, host) {
				t.Errorf("the container sees a host or other-VM process: %q", p)
			}
		}
	}
	if devs := get("netdev"); len(devs) != 1 || devs[0] != "lo" {
		t.Errorf("network devices %v, want lo alone", devs)
	}
	if k := get("kvm"); len(k) != 1 || k[0] != "unusable" {
		t.Errorf("/dev/kvm: %v", k)
	}
	if f := get("found"); len(f) > 0 {
		t.Errorf("found on the container's file systems: %v", f)
	}
	if sh := get("share"); len(sh) != 1 || sh[0] != "iso" {
		t.Errorf("the VM's share holds %v, want this container's directory alone", sh)
	}
	for _, m := range get("mount") {
		for _, host := range []string{e.root, e.bundle, "/tmp/rvit"} {
			if strings.Contains(m, host) {
				t.Errorf("a host path shows in the container's mounts: %q", m)
			}
		}
	}
	e.mustRun("delete", "--force", "other")
}

// `runvirt debug-shell` opens a shell in the guest itself, outside the
// container, only for sandboxes created with debug_shell = true.
func TestDebugShell(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.create("off")
	e.mustFail("set debug_shell = true", "debug-shell", "off")
	e.mustRun("delete", "--force", "off")

	e.setConfig("accel = ", "debug_shell = true\naccel = ")
	e.create("on")
	e.mustRun("start", "on")
	cmd := e.command("debug-shell", "on")
	cmd.Stdin = strings.NewReader("echo in-guest-$((6*7)); ls /run/runvirt/shared; exit 5\n")
	out, err := cmd.CombinedOutput()
	t.Logf("debug-shell: %v\n%s", err, out)
	if err != nil {
		t.Fatalf("debug-shell: %v", err)
	}
	// The shell sees the VM's share, which no container sees: it is in
	// the guest, outside the container.
	if !strings.Contains(string(out), "in-guest-42") || !strings.Contains(string(out), "@debug") || !strings.Contains(string(out), "on") {
		t.Errorf("debug-shell output %q", out)
	}
	debugShellFollowsResize(t, e, "on")
	e.mustRun("delete", "--force", "on")
}

// debugShellFollowsResize runs debug-shell on a terminal of ours and
// checks that the guest's pty takes the terminal's size, at start and
// after a resize (SIGWINCH to runvirt, as a terminal emulator sends).
func debugShellFollowsResize(t *testing.T, e *env, id string) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	defer ptmx.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80})
	cmd := e.command("debug-shell", id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// runvirt leads a session whose terminal is the pty: the kernel sends
	// it SIGWINCH when the size changes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// stty size answers "ROWS COLS"; ask until it does (the shell and the
	// resize take a moment to cross).
	expect := func(want string) {
		t.Helper()
		for t0 := time.Now(); time.Since(t0) < 30*time.Second; {
			ptmx.Write([]byte("stty size\r"))
			time.Sleep(500 * time.Millisecond)
			mu.Lock()
			got := out.String()
			mu.Unlock()
			if strings.Contains(got, "\n"+want+"\r") {
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the debug shell never saw size %q: %q", want, out.String())
	}
	expect("24 80")
	pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 132})
	expect("50 132")
	ptmx.Write([]byte("exit\r"))
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("debug-shell on a terminal: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Error("debug-shell did not end after exit")
	}
}
