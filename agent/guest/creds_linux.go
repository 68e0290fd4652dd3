package guest

// The workload's identity: user and groups, capabilities, rlimits, its
// environment and the executable it runs. All of it runs in the container
// child on the thread that calls execve: capabilities, the bounding set and
// (through raw syscalls) credentials are per-thread in Linux, and Go would
// otherwise run them on whichever thread is handy.

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capNames maps capability names to numbers (the index), as in
// <linux/capability.h>.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// capNumber returns the number of a capability name ("CAP_KILL" or "kill").
func capNumber(name string) (int, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for i, c := range capNames {
		if c == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q", name)
}

// capSets are the five capability sets as bit masks.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// parseCapabilities turns the spec's names into masks. Capabilities the
// running kernel does not know (above lastCap) are left out, as runc does.
func parseCapabilities(c *specs.LinuxCapabilities, lastCap int) (capSets, error) {
	var s capSets
	sets := []struct {
		names []string
		mask  *uint64
	}{
		{c.Bounding, &s.bounding}, {c.Effective, &s.effective},
		{c.Permitted, &s.permitted}, {c.Inheritable, &s.inheritable},
		{c.Ambient, &s.ambient},
	}
	for _, set := range sets {
		for _, name := range set.names {
			n, err := capNumber(name)
			if err != nil {
				return capSets{}, err
			}
			if n <= lastCap {
				*set.mask |= 1 << n
			}
		}
	}
	return s, nil
}

// lastCapability reads the kernel's highest capability number; it must run
// before the pivot, while /proc is the agent's.
func lastCapability() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse cap_last_cap: %w", err)
	}
	return n, nil
}

// applyCreds switches to the spec's user and capabilities in runc's order:
// drop from the bounding set (needs CAP_SETPCAP, so while still root), keep
// the permitted set across setuid, switch user, then set the exact sets. A
// process without a capabilities section keeps the kernel's setuid rules.
func applyCreds(p *specs.Process, lastCap int) error {
	if p.Capabilities == nil {
		return setUser(p.User)
	}
	caps, err := parseCapabilities(p.Capabilities, lastCap)
	if err != nil {
		return err
	}
	for c := 0; c <= lastCap; c++ {
		if caps.bounding&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from bounding set: %w", capName(c), err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	return setCapabilities(caps)
}

func capName(c int) string {
	if c < len(capNames) {
		return capNames[c]
	}
	return "capability " + strconv.Itoa(c)
}

// setCapabilities sets the effective, permitted and inheritable sets of this
// thread, then its ambient set (which needs the first two in place).
func setCapabilities(caps capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		shift := 32 * i
		data[i].Effective = uint32(caps.effective >> shift)
		data[i].Permitted = uint32(caps.permitted >> shift)
		data[i].Inheritable = uint32(caps.inheritable >> shift)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := 0; c < 64; c++ {
		if caps.ambient&(1<<c) == 0 {
			continue
		}
		// A capability not also inheritable cannot be ambient; runc skips
		// it rather than fail (its own default spec asks for exactly that).
		err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0)
		if err != nil && err != unix.EPERM {
			return fmt.Errorf("raise ambient %s: %w", capName(c), err)
		}
	}
	return nil
}

// setUser sets groups, gid and uid of this thread only. Go's syscall.Setuid
// changes every thread; here only the execve thread matters, and raw calls
// keep the per-thread keepcaps state meaningful.
func setUser(u specs.User) error {
	gids := make([]uint32, len(u.AdditionalGids))
	copy(gids, u.AdditionalGids)
	var ptr unsafe.Pointer
	if len(gids) > 0 {
		ptr = unsafe.Pointer(&gids[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(ptr), 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", u.AdditionalGids, e)
	}
	gid, uid := uintptr(u.GID), uintptr(u.UID)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, gid, gid, gid); e != 0 {
		return fmt.Errorf("setgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uid, uid, uid); e != 0 {
		return fmt.Errorf("setuid %d: %w", u.UID, e)
	}
	return nil
}

// rlimitNames maps the spec's rlimit types to resource numbers.
var rlimitNames = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// setRlimits applies the spec's rlimits. They are set in the guest, where the
// agent holds CAP_SYS_RESOURCE, so raising hard limits works. unix.Setrlimit
// goes through package syscall, which then stops Go from restoring its own
// RLIMIT_NOFILE at execve.
func setRlimits(rlimits []specs.POSIXRlimit) error {
	for _, r := range rlimits {
		res, ok := rlimitNames[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", r.Type)
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("set %s to %d/%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// processEnv is the workload's environment: the spec's, plus HOME from the
// container's /etc/passwd (or "/") when the spec has none, as runc does.
func processEnv(p *specs.Process) []string {
	env := append([]string(nil), p.Env...)
	if _, ok := lookupEnv(env, "HOME"); !ok {
		env = append(env, "HOME="+homeDir("/etc/passwd", p.User.UID))
	}
	return env
}

// envValue returns key's value in env, "" when absent.
func envValue(env []string, key string) string {
	v, _ := lookupEnv(env, key)
	return v
}

// lookupEnv finds key in env; the last entry wins, as when runc sets the
// variables one after the other.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v, true
		}
	}
	return "", false
}

// homeDir returns uid's home directory from a passwd file, or "/".
func homeDir(passwd string, uid uint32) string {
	f, err := os.Open(passwd)
	if err != nil {
		return "/"
	}
	defer f.Close()
	want := strconv.FormatUint(uint64(uid), 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 6 && fields[2] == want && fields[5] != "" {
			return fields[5]
		}
	}
	return "/"
}

// lookPath finds file as exec.LookPath would, with paths taken inside root
// ("" in the container, after the pivot; a directory in tests), and returns
// the path to execve (as seen inside root). Its errors are *ExecError with
// exec.Error's wording, which is runc's.
func lookPath(root, file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		if err := findExecutable(root, file); err != nil {
			return "", &ExecError{Name: file, Err: err}
		}
		return file, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "." // POSIX: an empty PATH entry is the cwd
		}
		p := filepath.Join(dir, file)
		if findExecutable(root, p) == nil {
			return p, nil
		}
	}
	return "", &ExecError{Name: file, Err: exec.ErrNotFound}
}

// findExecutable is exec's check: stat, not a directory, and executable for
// this thread's credentials. Errors name the path as seen inside root.
func findExecutable(root, file string) error {
	full := file
	if root != "" {
		full = filepath.Join(root, file)
	}
	fi, err := os.Stat(full)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = file
		}
		return err
	}
	if fi.IsDir() {
		return unix.EISDIR
	}
	err = unix.Faccessat(unix.AT_FDCWD, full, unix.X_OK, unix.AT_EACCESS)
	if err == nil || (err != unix.ENOSYS && err != unix.EPERM) {
		return err
	}
	if fi.Mode()&0o111 != 0 {
		return nil
	}
	return fs.ErrPermission
}
