package hypervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// User is an unprivileged identity QEMU runs as. runvirt starts QEMU with
// it (setgroups, setgid, setuid before exec), rather than QEMU's own
// -runas, for three reasons, each checked on QEMU 7.2:
//
//   - -runas drops only after QEMU set itself up, and its setgid/setuid are
//     the syscalls -sandbox elevateprivileges=deny kills QEMU for (SIGSYS,
//     with =children too): -runas needs elevateprivileges=allow.
//   - A change of credentials clears PR_SET_PDEATHSIG, so a QEMU that
//     dropped by itself no longer dies with its monitor.
//   - Started as the user, QEMU never runs as root at all: its option
//     parsing and device set-up run unprivileged too.
//
// Everything QEMU opens must then be open already (inherited fds: the
// console log, QMP, virtiofsd, taps, vhost, the agent channel) or readable
// by the user (the kernel and initrd; see CheckReadable). QEMU cannot
// chroot without root; it is left with what any other user may read.
type User struct {
	UID, GID uint32
	// Groups are supplementary groups (the /dev/kvm group under KVM).
	Groups []uint32
}

func (u *User) String() string {
	if u == nil {
		return "root"
	}
	return fmt.Sprintf("%d:%d", u.UID, u.GID)
}

func (u *User) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	// An empty Groups clears the supplementary groups (setgroups(0)).
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: slices.Clone(u.Groups)}
}

// kvmDevice is the KVM device QEMU opens by path.
const kvmDevice = "/dev/kvm"

// consoleFDSet is the -add-fd set holding the console log.
const consoleFDSet = 1

// qemuOptEscape escapes a value for a QEMU option string, where a comma
// separates options and ",," stands for a comma.
func qemuOptEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// KVMGroups returns the group QEMU needs as its supplementary group to open
// /dev/kvm as u, or nil when other users may open it anyway.
func KVMGroups() ([]uint32, error) {
	fi, err := os.Stat(kvmDevice)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", kvmDevice, err)
	}
	if fi.Mode().Perm()&0o006 == 0o006 {
		return nil, nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm()&0o060 != 0o060 {
		return nil, fmt.Errorf("%s (mode %o) cannot be opened by an unprivileged user", kvmDevice, fi.Mode().Perm())
	}
	return []uint32{st.Gid}, nil
}

// CheckReadable says whether u can read path: every directory on the way
// searchable, the file itself readable, by mode bits (runvirt runs as root,
// so access(2) would not tell).
func CheckReadable(path string, u *User) error {
	if u == nil {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return err
	}
	check := func(p string, want os.FileMode) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		switch {
		case st.Uid == u.UID:
			perm >>= 6
		case st.Gid == u.GID || slices.Contains(u.Groups, st.Gid):
			perm >>= 3
		}
		if perm&want != want {
			return fmt.Errorf("%s (mode %o, owner %d:%d) is not %s by uid %d", p, fi.Mode().Perm(), st.Uid, st.Gid,
				map[os.FileMode]string{1: "searchable", 4: "readable"}[want], u.UID)
		}
		return nil
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		if err := check(dir, 1); err != nil {
			return err
		}
		if dir == "/" {
			break
		}
	}
	return check(real, 4)
}

// ProbeUser starts QEMU as u (nil: root) the way a sandbox's is started
// (its seccomp sandbox on, QMP on an inherited socket, no guest), asks it
// to quit over QMP and returns the uid it ran as. It is `runvirt check`'s
// proof that QEMU can run unprivileged here.
func ProbeUser(qemu string, u *User, timeout time.Duration) (uid int, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "qmp"), os.NewFile(uintptr(fds[1]), "qmp-qemu")
	defer ours.Close()
	cmd := exec.Command(qemu, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none",
		"-sandbox", SandboxOption, "-chardev", "socket,id=qmp,fd=3", "-mon", "chardev=qmp,mode=control")
	cmd.ExtraFiles = []*os.File{theirs}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: u.credential()}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return -1, fmt.Errorf("start %s as %s: %w", qemu, u, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	ours.SetDeadline(time.Now().Add(timeout))
	// The greeting comes once QEMU is set up, as its user.
	greeting := make([]byte, 512)
	if _, err := ours.Read(greeting); err != nil {
		return -1, fmt.Errorf("qemu as %s did not answer on qmp: %w; it said: %s", u, err, strings.TrimSpace(stderr.String()))
	}
	uid = -1
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				fmt.Sscan(v, &uid)
			}
		}
	}
	if _, err := ours.Write([]byte(`{"execute":"qmp_capabilities"}{"execute":"quit"}`)); err != nil {
		return -1, fmt.Errorf("qmp: %w", err)
	}
	select {
	case err := <-done:
		done <- err // for the deferred wait
		if err != nil {
			return -1, fmt.Errorf("qemu as %s: %w; it said: %s", u, err, strings.TrimSpace(stderr.String()))
		}
	case <-time.After(timeout):
		return -1, fmt.Errorf("qemu as %s did not quit within %s", u, timeout)
	}
	return uid, nil
}
