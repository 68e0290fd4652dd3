package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func uintPtr(v uint) *uint { return &v }

// dockerProfile is moby's default seccomp profile as dockerd hands it to the
// runtime on amd64 for a container with the default capabilities: the
// architectures resolved to x86_64 and its sub-architectures, the rules for
// other arches and for capabilities the container lacks left out, and the
// syscalls of recent kernels that newer releases allow added.
func dockerProfile() *specs.LinuxSeccomp {
	allow := strings.Fields(`accept accept4 access adjtimex alarm bind brk cachestat capget capset
		chdir chmod chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
		clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range
		connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
		epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve
		execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
		fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64
		fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64
		fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
		futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid
		getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername
		getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
		getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
		get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
		inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
		io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
		io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
		landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
		listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
		map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
		mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
		mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink
		mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
		name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
		pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
		ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
		pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
		recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat
		renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
		rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
		rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
		sched_get_priority_min sched_getscheduler sched_rr_get_interval
		sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
		sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
		semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
		setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
		setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
		setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
		setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
		sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx
		symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
		timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
		timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
		timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
		unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid
		write writev`)
	personality := func(v uint64) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: specs.OpEqualTo}}}
	}
	return &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintPtr(1),
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: allow, Action: specs.ActAllow},
			{Names: []string{"process_vm_readv", "process_vm_writev", "ptrace"}, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpNotEqual}}},
			personality(0), personality(8), personality(0x20000), personality(0x20008), personality(0xffffffff),
			{Names: []string{"arch_prctl"}, Action: specs.ActAllow},
			{Names: []string{"modify_ldt"}, Action: specs.ActAllow},
			{Names: []string{"chroot"}, Action: specs.ActAllow},
			{Names: []string{"clone"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7e020000, Op: specs.OpMaskedEqual}}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.ENOSYS))},
		},
	}
}

// seccompVM runs a compiled filter on made-up seccomp_data.
type seccompVM struct {
	t  *testing.T
	vm *bpf.VM
}

func newSeccompVM(t *testing.T, s *specs.LinuxSeccomp) (*seccompVM, int) {
	t.Helper()
	f, err := compileSeccomp(s)
	if err != nil {
		t.Fatalf("compileSeccomp: %v", err)
	}
	raw := make([]bpf.RawInstruction, len(f.prog))
	for i, ins := range f.prog {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble: %v", raw)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return &seccompVM{t, vm}, len(f.prog)
}

// run returns the filter's verdict for a syscall. The VM loads words
// big-endian where the kernel loads them in the host's (little-endian)
// order, so each 32-bit field is stored big-endian at its offset.
func (v *seccompVM) run(arch, nr uint32, args ...uint64) uint32 {
	v.t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[seccompDataNr:], nr)
	binary.BigEndian.PutUint32(data[seccompDataArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[argLow(uint(i)):], uint32(a))
		binary.BigEndian.PutUint32(data[argHigh(uint(i)):], uint32(a>>32))
	}
	ret, err := v.vm.Run(data)
	if err != nil {
		v.t.Fatalf("run: %v", err)
	}
	return uint32(ret)
}

func mustNumber(t *testing.T, abi *seccompABI, name string) uint32 {
	t.Helper()
	nr, ok := abi.number(name)
	if !ok {
		t.Fatalf("%s has no syscall %s", abi.arch, name)
	}
	return nr
}

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_THREAD
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func TestSeccompSyscallTables(t *testing.T) {
	for _, abi := range []*seccompABI{abiX86_64, abiI386, abiX32} {
		if !slices.IsSortedFunc(abi.table, func(a, b syscallNumber) int { return strings.Compare(a.name, b.name) }) {
			t.Errorf("%s table not sorted by name", abi.arch)
		}
		for i := 1; i < len(abi.table); i++ {
			if abi.table[i].name == abi.table[i-1].name {
				t.Errorf("%s: %s twice", abi.arch, abi.table[i].name)
			}
		}
	}
	// x86_64 against the Go tables; the others against the kernel's.
	for name, want := range map[string]uint32{
		"read": unix.SYS_READ, "getcwd": unix.SYS_GETCWD, "personality": unix.SYS_PERSONALITY,
		"socket": unix.SYS_SOCKET, "clone3": unix.SYS_CLONE3, "futex_waitv": unix.SYS_FUTEX_WAITV,
		"fchmodat2": unix.SYS_FCHMODAT2, "map_shadow_stack": unix.SYS_MAP_SHADOW_STACK,
		"file_setattr": unix.SYS_FILE_SETATTR,
	} {
		if got := mustNumber(t, abiX86_64, name); got != want {
			t.Errorf("x86_64 %s = %d, want %d", name, got, want)
		}
	}
	for name, want := range map[string]uint32{
		"read": 3, "socketcall": 102, "ipc": 117, "uname": 122, "getcwd": 183, "socket": 359,
		"chown32": 212, "fchmodat2": 452,
	} {
		if got := mustNumber(t, abiI386, name); got != want {
			t.Errorf("i386 %s = %d, want %d", name, got, want)
		}
	}
	for name, want := range map[string]uint32{"read": 0, "rt_sigaction": 512, "execve": 520, "fchmodat2": 452} {
		if got := mustNumber(t, abiX32, name); got != want|x32SyscallBit {
			t.Errorf("x32 %s = %#x, want %#x", name, got, want|x32SyscallBit)
		}
	}
	for _, abi := range []*seccompABI{abiI386, abiX32} {
		if _, ok := abi.number("map_shadow_stack"); ok {
			t.Errorf("%s has map_shadow_stack, an x86_64-only syscall", abi.arch)
		}
	}
}

func TestSeccompDockerProfile(t *testing.T) {
	vm, n := newSeccompVM(t, dockerProfile())
	t.Logf("docker's default profile: %d instructions", n)
	if n > bpfMaxInstructions {
		t.Fatalf("%d instructions, over the kernel's limit", n)
	}
	x64, i386 := uint32(unix.AUDIT_ARCH_X86_64), uint32(unix.AUDIT_ARCH_I386)
	eperm := retErrno(unix.EPERM)
	for _, c := range []struct {
		what     string
		arch, nr uint32
		args     []uint64
		want     uint32
	}{
		{"x86_64 read", x64, unix.SYS_READ, nil, retAllow},
		{"x86_64 reboot", x64, unix.SYS_REBOOT, nil, eperm},
		{"x86_64 mount", x64, unix.SYS_MOUNT, nil, eperm},
		{"x86_64 clone3", x64, unix.SYS_CLONE3, nil, retErrno(unix.ENOSYS)},
		{"x86_64 clone thread", x64, unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_THREAD}, retAllow},
		{"x86_64 clone newns", x64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWNS}, eperm},
		{"x86_64 socket inet", x64, unix.SYS_SOCKET, []uint64{unix.AF_INET}, retAllow},
		{"x86_64 socket vsock", x64, unix.SYS_SOCKET, []uint64{unix.AF_VSOCK}, eperm},
		{"x86_64 socket vsock, high bits", x64, unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_VSOCK}, retAllow},
		{"x86_64 personality query", x64, unix.SYS_PERSONALITY, []uint64{0xffffffff}, retAllow},
		{"x86_64 personality other", x64, unix.SYS_PERSONALITY, []uint64{0x0400000}, eperm},
		{"x86_64 newer than the profile", x64, 1000, nil, retErrno(unix.ENOSYS)},
		{"x86_64 -1", x64, 0xffffffff, nil, retErrno(unix.ENOSYS)},
		{"x32 read", x64, x32SyscallBit, nil, retAllow},
		{"x32 rt_sigaction", x64, x32SyscallBit | 512, nil, retAllow},
		{"x32 reboot", x64, x32SyscallBit | unix.SYS_REBOOT, nil, eperm},
		{"x32 newer than the profile", x64, x32SyscallBit | 1000, nil, retErrno(unix.ENOSYS)},
		{"x32 socket vsock, high bits ignored", x64, x32SyscallBit | unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_VSOCK}, eperm},
		{"i386 read", i386, 3, nil, retAllow},
		{"i386 chown32", i386, 212, nil, retAllow},
		{"i386 reboot", i386, 88, nil, eperm},
		{"i386 socketcall", i386, 102, []uint64{1, 0x1234}, retAllow},
		{"i386 socket inet", i386, 359, []uint64{unix.AF_INET}, retAllow},
		{"i386 socket vsock", i386, 359, []uint64{unix.AF_VSOCK}, eperm},
		{"i386 newer than the profile", i386, 1000, nil, retErrno(unix.ENOSYS)},
		{"aarch64", unix.AUDIT_ARCH_AARCH64, 0, nil, retKill},
	} {
		if got := vm.run(c.arch, c.nr, c.args...); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.what, got, c.want)
		}
	}
}

// TestSeccompOperators compares every operator with its definition, on the
// full 64 bits for x86_64 and on the low 32 bits for i386 and x32.
func TestSeccompOperators(t *testing.T) {
	var datum, mask, masked uint64 = 0x00000001_00000005, 0xff000000_000000ff, 0x12000000_00000034
	values := []uint64{0, 4, 5, 6, 0xffffffff, 1 << 32, 1<<32 | 4, 1<<32 | 5, 1<<32 | 6,
		2 << 32, 2<<32 | 5, ^uint64(0), 0x12ffffff_ffffff34, 0x12000000_00000035, 0x13000000_00000034}
	ops := []struct {
		op   specs.LinuxSeccompOperator
		want func(a, v uint64) bool
	}{
		{specs.OpEqualTo, func(a, v uint64) bool { return a == v }},
		{specs.OpNotEqual, func(a, v uint64) bool { return a != v }},
		{specs.OpGreaterThan, func(a, v uint64) bool { return a > v }},
		{specs.OpGreaterEqual, func(a, v uint64) bool { return a >= v }},
		{specs.OpLessThan, func(a, v uint64) bool { return a < v }},
		{specs.OpLessEqual, func(a, v uint64) bool { return a <= v }},
		{specs.OpMaskedEqual, nil},
	}
	hit := retErrno(unix.EBADMSG)
	for _, o := range ops {
		arg := specs.LinuxSeccompArg{Index: 3, Value: datum, Op: o.op}
		if o.op == specs.OpMaskedEqual {
			arg.Value, arg.ValueTwo = mask, masked
		}
		vm, _ := newSeccompVM(t, &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno,
				ErrnoRet: uintPtr(uint(unix.EBADMSG)), Args: []specs.LinuxSeccompArg{arg}}},
		})
		for _, v := range values {
			args := []uint64{0, 0, 0, v}
			want64 := o.op == specs.OpMaskedEqual && v&mask == masked ||
				o.op != specs.OpMaskedEqual && o.want(v, datum)
			want32 := o.op == specs.OpMaskedEqual && uint32(v)&uint32(mask) == uint32(masked) ||
				o.op != specs.OpMaskedEqual && o.want(uint64(uint32(v)), uint64(uint32(datum)))
			for _, c := range []struct {
				abi      string
				arch, nr uint32
				want     bool
			}{
				{"x86_64", unix.AUDIT_ARCH_X86_64, unix.SYS_GETPPID, want64},
				{"i386", unix.AUDIT_ARCH_I386, 64, want32},
				{"x32", unix.AUDIT_ARCH_X86_64, x32SyscallBit | unix.SYS_GETPPID, want32},
			} {
				got := vm.run(c.arch, c.nr, args...) == hit
				if got != c.want {
					t.Errorf("%s %s %#x, arg %#x: matched %v, want %v", c.abi, o.op, datum, v, got, c.want)
				}
			}
		}
	}
}

func TestSeccompRuleSemantics(t *testing.T) {
	x64 := uint32(unix.AUDIT_ARCH_X86_64)
	argEq := func(i uint, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: i, Value: v, Op: specs.OpEqualTo}
	}
	errno := func(e unix.Errno, names []string, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(e)), Args: args}
	}
	vm, _ := newSeccompVM(t, &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			// Arguments of one rule: all must match.
			errno(unix.E2BIG, []string{"getuid"}, argEq(0, 1), argEq(1, 2)),
			// Rules for one syscall: the first that matches.
			errno(unix.EBADF, []string{"getgid"}, argEq(0, 1)),
			errno(unix.ECHILD, []string{"getgid"}, argEq(1, 1)),
			// An unconditional rule beats rules with arguments, before or after it.
			errno(unix.EBADF, []string{"geteuid"}, argEq(0, 1)),
			errno(unix.EDOM, []string{"geteuid"}),
			errno(unix.EBADF, []string{"geteuid"}, argEq(0, 2)),
			// Two comparisons of one argument: either (runc).
			errno(unix.ERANGE, []string{"getegid"}, argEq(0, 1), argEq(0, 2)),
			// The default action: left out, so it hides nothing.
			{Names: []string{"getppid"}, Action: specs.ActAllow},
			errno(unix.EIO, []string{"getppid"}, argEq(0, 1)),
			// Unknown names and names of other ABIs are skipped.
			errno(unix.EPERM, []string{"nosuchsyscall", "chown32", "getpgrp"}),
		},
	})
	for _, c := range []struct {
		what string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"and: both", unix.SYS_GETUID, []uint64{1, 2}, retErrno(unix.E2BIG)},
		{"and: one", unix.SYS_GETUID, []uint64{1, 3}, retAllow},
		{"first rule", unix.SYS_GETGID, []uint64{1, 1}, retErrno(unix.EBADF)},
		{"second rule", unix.SYS_GETGID, []uint64{0, 1}, retErrno(unix.ECHILD)},
		{"no rule", unix.SYS_GETGID, []uint64{0, 0}, retAllow},
		{"unconditional", unix.SYS_GETEUID, []uint64{1}, retErrno(unix.EDOM)},
		{"unconditional 2", unix.SYS_GETEUID, []uint64{2}, retErrno(unix.EDOM)},
		{"same argument 1", unix.SYS_GETEGID, []uint64{1}, retErrno(unix.ERANGE)},
		{"same argument 2", unix.SYS_GETEGID, []uint64{2}, retErrno(unix.ERANGE)},
		{"same argument 3", unix.SYS_GETEGID, []uint64{3}, retAllow},
		{"default action rule", unix.SYS_GETPPID, []uint64{1}, retErrno(unix.EIO)},
		{"known name", unix.SYS_GETPGRP, nil, retErrno(unix.EPERM)},
		// Only x86_64 is listed (implicitly): x32 is a foreign arch, but
		// for -1, and ENOSYS is not given without architectures.
		{"x32", x32SyscallBit | unix.SYS_GETUID, nil, retKill},
		{"-1", 0xffffffff, nil, retAllow},
	} {
		if got := vm.run(x64, c.nr, c.args...); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.what, got, c.want)
		}
	}
	if got := vm.run(unix.AUDIT_ARCH_I386, 3); got != retKill {
		t.Errorf("i386 without SCMP_ARCH_X86: %#x, want kill", got)
	}
}

func TestSeccompI386Multiplexers(t *testing.T) {
	vm, _ := newSeccompVM(t, &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_PACKET, Op: specs.OpEqualTo}}},
			{Names: []string{"send", "shmat"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.EIO))},
		},
	})
	i386 := uint32(unix.AUDIT_ARCH_I386)
	for _, c := range []struct {
		what string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"socket packet", 359, []uint64{unix.AF_PACKET}, retErrno(unix.EPERM)},
		{"socket inet", 359, []uint64{unix.AF_INET}, retAllow},
		// libseccomp: through socketcall the family is not visible, the
		// call number replaces the comparison.
		{"socketcall(SOCKET)", 102, []uint64{1, 0xffff0000}, retErrno(unix.EPERM)},
		{"socketcall(BIND)", 102, []uint64{2, 0xffff0000}, retAllow},
		{"socketcall(SEND)", 102, []uint64{9}, retErrno(unix.EIO)},
		{"ipc(SHMAT)", 117, []uint64{21}, retErrno(unix.EIO)},
		{"ipc(SHMDT)", 117, []uint64{22}, retAllow},
		{"shmat", 397, nil, retErrno(unix.EIO)},
	} {
		if got := vm.run(i386, c.nr, c.args...); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.what, got, c.want)
		}
	}
	if got := vm.run(unix.AUDIT_ARCH_X86_64, unix.SYS_SOCKET, unix.AF_PACKET); got != retErrno(unix.EPERM) {
		t.Errorf("x86_64 socket packet: %#x", got)
	}
}

func TestSeccompLongBodies(t *testing.T) {
	// 200 rules for one syscall and 250 syscalls with rules: far jumps.
	var rules []specs.LinuxSyscall
	for i := range 200 {
		rules = append(rules, specs.LinuxSyscall{Names: []string{"getppid"}, Action: specs.ActErrno,
			ErrnoRet: uintPtr(uint(i + 1)),
			Args:     []specs.LinuxSeccompArg{{Index: 2, Value: uint64(i) << 32, Op: specs.OpEqualTo}}})
	}
	for _, e := range syscallsX86_64[:250] {
		rules = append(rules, specs.LinuxSyscall{Names: []string{e.name}, Action: specs.ActTrace,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 7, Op: specs.OpGreaterThan}}})
	}
	vm, n := newSeccompVM(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules})
	t.Logf("%d instructions", n)
	x64 := uint32(unix.AUDIT_ARCH_X86_64)
	if got := vm.run(x64, unix.SYS_GETPPID, 0, 0, 199<<32); got != retErrno(200) {
		t.Errorf("last rule: %#x", got)
	}
	if got := vm.run(x64, unix.SYS_GETPPID, 0, 0, 200<<32); got != retAllow {
		t.Errorf("no rule: %#x", got)
	}
	for _, e := range syscallsX86_64[:250] {
		if e.name == "getppid" {
			continue
		}
		if got := vm.run(x64, e.nr, 8); got != unix.SECCOMP_RET_TRACE|uint32(unix.EPERM) {
			t.Errorf("%s(8): %#x, want trace", e.name, got)
		}
		if got := vm.run(x64, e.nr, 7); got != retAllow {
			t.Errorf("%s(7): %#x, want allow", e.name, got)
		}
	}
}

func TestSeccompCompileErrors(t *testing.T) {
	base := func(mod func(s *specs.LinuxSeccomp)) *specs.LinuxSeccomp {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}
		mod(s)
		return s
	}
	for want, s := range map[string]*specs.LinuxSeccomp{
		`default action: unknown seccomp action "SCMP_ACT_BOGUS"`: base(func(s *specs.LinuxSeccomp) { s.DefaultAction = "SCMP_ACT_BOGUS" }),
		`syscalls read: unknown seccomp action "SCMP_ACT_NOPE"`:   base(func(s *specs.LinuxSeccomp) { s.Syscalls[0].Action = "SCMP_ACT_NOPE" }),
		"syscalls read: seccomp notify is not supported":          base(func(s *specs.LinuxSeccomp) { s.Syscalls[0].Action = specs.ActNotify }),
		"seccomp notify is not supported":                         base(func(s *specs.LinuxSeccomp) { s.ListenerPath = "/run/agent.sock" }),
		`syscalls read: unknown seccomp operator "SCMP_CMP_BOGUS"`: base(func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}}
		}),
		"syscalls read: argument index 6 out of range (0-5)": base(func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}
		}),
		`unknown seccomp architecture "SCMP_ARCH_PDP11"`: base(func(s *specs.LinuxSeccomp) { s.Architectures = []specs.Arch{"SCMP_ARCH_PDP11"} }),
		`seccomp flag "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" is not supported`: base(func(s *specs.LinuxSeccomp) {
			s.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}
		}),
		"syscalls read,: empty syscall name":         base(func(s *specs.LinuxSeccomp) { s.Syscalls[0].Names = append(s.Syscalls[0].Names, "") }),
		"syscalls read: errnoRet 70000 out of range": base(func(s *specs.LinuxSeccomp) { s.Syscalls[0].ErrnoRet = uintPtr(70000) }),
	} {
		if _, err := compileSeccomp(s); err == nil || err.Error() != want {
			t.Errorf("compileSeccomp = %v, want %q", err, want)
		}
	}
}

func TestSeccompFlagsAndArchs(t *testing.T) {
	f, err := compileSeccomp(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{seccompFlagTsync, specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow},
		Architectures: []specs.Arch{specs.ArchAARCH64, specs.ArchARM},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.flags != unix.SECCOMP_FILTER_FLAG_LOG|unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW {
		t.Errorf("flags %#x", f.flags)
	}
	for _, a := range SeccompArchs() {
		if _, err := compileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.Arch(a)}}); err != nil {
			t.Errorf("arch %s: %v", a, err)
		}
	}
	for _, a := range SeccompActions() {
		if _, err := seccompAction(specs.LinuxSeccompAction(a), nil); err != nil {
			t.Errorf("action %s: %v", a, err)
		}
	}
}

// seccompHelperEnv makes the test binary a helper that loads a filter and
// makes syscalls under it (see TestSeccompHelper).
const seccompHelperEnv = "RUNVIRT_SECCOMP_HELPER"

// testSeccompProfile denies getcwd, uname and socket(AF_PACKET), and
// compares an argument of syscalls that ignore their arguments (so any
// value can be passed) and that the Go runtime does not make.
func testSeccompProfile() *specs.LinuxSeccomp {
	const datum = 0x00000001_00000005
	cond := func(name string, op specs.LinuxSeccompOperator, v, v2 uint64) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{name}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.EBADMSG)),
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: v, ValueTwo: v2, Op: op}}}
	}
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getcwd"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.ENOSYS))},
			{Names: []string{"uname"}, Action: specs.ActErrno},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.EAFNOSUPPORT)),
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_PACKET, Op: specs.OpEqualTo}}},
			cond("getuid", specs.OpEqualTo, datum, 0),
			cond("geteuid", specs.OpNotEqual, datum, 0),
			cond("getgid", specs.OpGreaterThan, datum, 0),
			cond("getegid", specs.OpGreaterEqual, datum, 0),
			cond("getppid", specs.OpLessThan, datum, 0),
			cond("getpgrp", specs.OpLessEqual, datum, 0),
			cond("munlockall", specs.OpMaskedEqual, 0xff000000_000000ff, 0x12000000_00000034),
		},
	}
}

// TestSeccompHelper is not a test: run by TestSeccompKernel with
// seccompHelperEnv set, it loads a profile on its thread and reports what
// syscalls return, or, for "exec", execs busybox under docker's profile.
func TestSeccompHelper(t *testing.T) {
	mode := os.Getenv(seccompHelperEnv)
	if mode == "" {
		t.Skip("helper process for TestSeccompKernel")
	}
	runtime.LockOSThread()
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	profile := testSeccompProfile()
	if mode == "exec" {
		profile = dockerProfile()
	}
	f, err := compileSeccomp(profile)
	if err != nil {
		fail(err)
	}
	if mode == "exec" {
		// As root without no_new_privs, as an init without it loads it.
		if err := f.load(); err != nil {
			fail(err)
		}
		fail(syscall.Exec(busybox, []string{"busybox", "true"}, nil))
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	if err := f.load(); err != nil {
		fail(err)
	}
	var out []string
	report := func(what string, err error) {
		var e unix.Errno
		errors.As(err, &e)
		out = append(out, fmt.Sprintf("%s=%d", what, e))
	}
	_, err = unix.Getcwd(make([]byte, 256))
	report("getcwd", err)
	var uts unix.Utsname
	report("uname", unix.Uname(&uts))
	for _, family := range []int{unix.AF_PACKET, unix.AF_INET} {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		report(fmt.Sprintf("socket(%d)", family), err)
	}
	for _, v := range seccompKernelValues {
		for _, sc := range []struct {
			name string
			trap uintptr
		}{
			{"eq", unix.SYS_GETUID}, {"ne", unix.SYS_GETEUID}, {"gt", unix.SYS_GETGID}, {"ge", unix.SYS_GETEGID},
			{"lt", unix.SYS_GETPPID}, {"le", unix.SYS_GETPGRP}, {"masked", unix.SYS_MUNLOCKALL},
		} {
			_, _, e := unix.RawSyscall(sc.trap, 0, uintptr(v), 0)
			report(fmt.Sprintf("%s(%#x)", sc.name, v), e)
		}
	}
	// The test ends on its own: os.Exit(0) in a test is an error. The
	// thread it ran on stays locked and ends with it.
	fmt.Println(strings.Join(out, "\n"))
}

var seccompKernelValues = []uint64{0, 5, 6, 0xffffffff, 1 << 32, 1<<32 | 4, 1<<32 | 5, 1<<32 | 6, 2<<32 | 5, ^uint64(0),
	0x12abcdef_00000034, 0x12000000_00000035}

// TestSeccompKernel loads filters in the kernel: errno actions, argument
// comparisons on both halves of 64-bit registers, and docker's profile
// letting a process exec busybox.
func TestSeccompKernel(t *testing.T) {
	if os.Getenv(seccompHelperEnv) != "" {
		t.Skip("in the helper")
	}
	helper := func(mode string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompHelper$")
		cmd.Env = append(os.Environ(), seccompHelperEnv+"="+mode, "GOMAXPROCS=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := helper("syscalls")
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	got := map[string]unix.Errno{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue // the test framework's PASS
		}
		var e int
		if _, err := fmt.Sscan(v, &e); err != nil {
			t.Fatalf("helper said %q", out)
		}
		got[k] = unix.Errno(e)
	}
	want := map[string]unix.Errno{
		"getcwd": unix.ENOSYS, "uname": unix.EPERM,
		fmt.Sprintf("socket(%d)", unix.AF_PACKET): unix.EAFNOSUPPORT, fmt.Sprintf("socket(%d)", unix.AF_INET): 0,
	}
	const datum = 0x00000001_00000005
	for _, v := range seccompKernelValues {
		hit := func(b bool) unix.Errno {
			if b {
				return unix.EBADMSG
			}
			return 0
		}
		want[fmt.Sprintf("eq(%#x)", v)] = hit(v == datum)
		want[fmt.Sprintf("ne(%#x)", v)] = hit(v != datum)
		want[fmt.Sprintf("gt(%#x)", v)] = hit(v > datum)
		want[fmt.Sprintf("ge(%#x)", v)] = hit(v >= datum)
		want[fmt.Sprintf("lt(%#x)", v)] = hit(v < datum)
		want[fmt.Sprintf("le(%#x)", v)] = hit(v <= datum)
		want[fmt.Sprintf("masked(%#x)", v)] = hit(v&0xff000000_000000ff == 0x12000000_00000034)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: errno %d (reported %v), want %d", k, g, ok, w)
		}
	}

	testutil.RequiresBusybox(t)
	testutil.RequiresRoot(t, "load a filter without no_new_privs")
	if out, err := helper("exec"); err != nil || out != "" {
		t.Errorf("busybox true under docker's profile: %v, output %q", err, out)
	}
}

// TestSpawnSeccomp runs containers under seccomp profiles: the init with and
// without no_new_privs (the filter is then loaded before the capabilities
// drop, and the rest of the setup runs under it), an exec, and profiles that
// fail create.
func TestSpawnSeccomp(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)

	for _, nnp := range []bool{true, false} {
		spec := testSpec("sh", "-c", "grep Seccomp: /proc/self/status; id -u; busybox true && echo ok")
		spec.Process.NoNewPrivileges = nnp
		spec.Process.User = specs.User{UID: 1000, GID: 1000}
		spec.Linux.Seccomp = dockerProfile()
		r := runInit(t, "seccomp-docker", spec, root)
		if want := "Seccomp:\t2\n1000\nok\n"; r.stdout != want || r.status.ExitStatus() != 0 {
			t.Errorf("docker's profile, no_new_privs %v: stdout %q (status %v, stderr %q), want %q",
				nnp, r.stdout, r.status, r.stderr, want)
		}
	}

	// Where the filter is loaded: without no_new_privs before the switch to
	// the workload's user, with it after.
	noSetuid := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"setresuid"}, Action: specs.ActErrno}},
	}
	for _, nnp := range []bool{true, false} {
		spec := testSpec("sh", "-c", "id -u")
		spec.Process.NoNewPrivileges = nnp
		spec.Process.User = specs.User{UID: 1000, GID: 1000}
		spec.Linux.Seccomp = noSetuid
		s := newPipeStdio(t)
		p, _, err := spawnAndStart("seccomp-order", spec, root, s.child)
		s.closeChild()
		if err != nil {
			reapAny(t)
		} else {
			reap(t, p.Pid)
		}
		s.wg.Wait()
		if nnp && (err != nil || s.stdout.String() != "1000\n") {
			t.Errorf("setresuid denied after the switch: %v, stdout %q", err, s.stdout.String())
		}
		if want := "spawn init seccomp-order: setuid 1000: operation not permitted"; !nnp && (err == nil || err.Error() != want) {
			t.Errorf("setresuid denied before the switch: %v, want %q", err, want)
		}
	}

	// A profile that denies close_range, loaded early (no no_new_privs):
	// the agent's own fds are marked close-on-exec before it.
	noCloseRange := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"close_range"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.ENOSYS))}},
	}
	for _, nnp := range []bool{true, false} {
		spec := testSpec("sh", "-c", "echo ok")
		spec.Process.NoNewPrivileges = nnp
		spec.Linux.Seccomp = noCloseRange
		r := runInit(t, "seccomp-close-range", spec, root)
		if r.stdout != "ok\n" || r.status.ExitStatus() != 0 {
			t.Errorf("a profile denying close_range, no_new_privs %v: stdout %q (status %v, stderr %q)", nnp, r.stdout, r.status, r.stderr)
		}
	}

	noMkdir := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno,
			ErrnoRet: uintPtr(uint(unix.ENOSYS))}},
	}
	const script = "grep Seccomp: /proc/self/status; mkdir /tmp/d; echo rc=$?"
	spec := testSpec("sh", "-c", script+"; echo ready; exec sleep 1000")
	spec.Linux.Seccomp = noMkdir
	init := newPipeStdio(t)
	ip, _, err := spawnAndStart("seccomp-exec", spec, root, init.child)
	init.closeChild()
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnInit: %v", err)
	}
	defer func() {
		ip.Signal(unix.SIGKILL)
		reap(t, ip.Pid)
		init.wg.Wait()
		if !strings.Contains(init.stderr.String(), "Function not implemented") {
			t.Errorf("init's mkdir: stderr %q, want ENOSYS", init.stderr.String())
		}
	}()
	for _, want := range []string{"Seccomp:\t2", "rc=1", "ready"} {
		if l := init.waitLine(t); l != want {
			t.Fatalf("init said %q, want %q", l, want)
		}
	}
	// The exec is the agent's child, not the init's: it gets the
	// container's profile itself.
	ex := newPipeStdio(t)
	ep, _, err := SpawnExec("seccomp-exec", ip.Pid, spec, &specs.Process{Args: []string{"sh", "-c", script},
		Env: []string{"PATH=/bin"}, Cwd: "/", NoNewPrivileges: true}, ex.child)
	ex.closeChild()
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnExec: %v", err)
	}
	reap(t, ep.Pid)
	ex.wg.Wait()
	if ex.stdout.String() != "Seccomp:\t2\nrc=1\n" || !strings.Contains(ex.stderr.String(), "Function not implemented") {
		t.Errorf("exec: stdout %q, stderr %q", ex.stdout.String(), ex.stderr.String())
	}

	for want, sc := range map[string]*specs.LinuxSeccomp{
		`spawn init seccomp-bad: seccomp profile: syscalls uname: unknown seccomp action "SCMP_ACT_BOGUS"`: {
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"uname"}, Action: "SCMP_ACT_BOGUS"}},
		},
		"spawn init seccomp-bad: seccomp profile: syscalls uname: seccomp notify is not supported": {
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"uname"}, Action: specs.ActNotify}},
		},
	} {
		spec := testSpec("true")
		spec.Linux.Seccomp = sc
		s := newPipeStdio(t)
		_, err := SpawnInit("seccomp-bad", spec, root, s.child)
		s.closeChild()
		reapAny(t)
		s.wg.Wait()
		if err == nil || err.Error() != want {
			t.Errorf("SpawnInit = %v, want %q", err, want)
		}
	}
}
