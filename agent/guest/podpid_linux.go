package guest

// A pod's container that shares the sandbox container's pid namespace.
//
// A process in that namespace is one every container of the pod can reach
// (/proc/PID/root, /proc/PID/cwd, /proc/PID/fd, ptrace with
// CAP_SYS_PTRACE). The init child sets the container up with the guest's
// root, the agent's pipes and every privilege, so it never enters the
// namespace: it joins it for its children only (setns(CLONE_NEWPID)) and,
// once the container is set up, its privileges dropped and its other fds
// close-on-exec, forks the workload there under ptrace. The workload is
// stopped right after its execve, so until start the pod sees only the
// workload itself, already inside, and nothing else can trace it. Start
// detaches it; the init child then exits and the workload becomes the
// agent's child (PID 1 of the guest reaps orphans of the root namespace),
// with the pid create reported.
//
// The container's /proc must show the sandbox's pid namespace, which a
// process outside it cannot mount: procfs takes the namespace of the
// process that mounts it. So the child clones the sandbox container's own
// /proc mount instead (its top mount only, not what is mounted below it)
// and checks that it is a procfs of that namespace.

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Descriptors an init child that shares the pod sandbox's pid namespace
// finds open (see startChild).
const (
	childPodPidNSFd = 8 // the sandbox's pid namespace
	childPodMntNSFd = 9 // the sandbox's mount namespace, to clone its /proc
)

// openPodPidNS opens the pid and mount namespaces of the sandbox's init for
// a container that shares its pid namespace.
func openPodPidNS(sandboxPid int) (pidNS, mntNS *os.File, err error) {
	pidNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/pid", sandboxPid))
	if err != nil {
		return nil, nil, fmt.Errorf("open the pod sandbox's pid namespace: %w", err)
	}
	mntNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", sandboxPid))
	if err != nil {
		pidNS.Close()
		return nil, nil, fmt.Errorf("open the pod sandbox's mount namespace: %w", err)
	}
	return pidNS, mntNS, nil
}

// sandboxProcTree runs in the init child, in its own new mount namespace
// and before anything is mounted there: it returns a detached clone of the
// sandbox container's /proc mount. A mount can only be cloned from the
// caller's own mount namespace, so the child visits the sandbox's and comes
// back. What the sandbox container has at /proc is its own to change, so
// the clone must be a procfs whose pid 1 is in the sandbox's pid
// namespace.
func sandboxProcTree() (*procTree, error) {
	own, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own mount namespace: %w", err)
	}
	defer unix.Close(own)
	// setns(CLONE_NEWNS) needs an fs_struct of our own; this thread is
	// locked, so the rest of the setup sees our namespace's root again.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(childPodMntNSFd, unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("join the pod sandbox's mount namespace: %w", err)
	}
	tree, treeErr := unix.OpenTree(unix.AT_FDCWD, "/proc", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
	if err := unix.Setns(own, unix.CLONE_NEWNS); err != nil {
		// Nothing more may happen in the sandbox's namespace.
		return nil, fmt.Errorf("return to own mount namespace: %w", err)
	}
	unix.Close(childPodMntNSFd)
	if treeErr != nil {
		return nil, fmt.Errorf("clone the pod sandbox's /proc: %w", treeErr)
	}
	if err := checkProcTree(tree); err != nil {
		unix.Close(tree)
		return nil, fmt.Errorf("the pod sandbox's /proc: %w", err)
	}
	return &procTree{fd: tree}, nil
}

// checkProcTree checks that tree is a procfs of the sandbox's pid
// namespace: its pid 1 is that namespace's init.
func checkProcTree(tree int) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(tree, &fs); err != nil {
		return err
	}
	if fs.Type != unix.PROC_SUPER_MAGIC {
		return errors.New("not a procfs: the container's /proc cannot show the pod's pid namespace")
	}
	var want, got unix.Stat_t
	if err := unix.Fstat(childPodPidNSFd, &want); err != nil {
		return err
	}
	if err := unix.Fstatat(tree, "1/ns/pid", &got, 0); err != nil {
		return fmt.Errorf("find its pid namespace: %w", err)
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		return errors.New("a procfs of another pid namespace")
	}
	return nil
}

// procTree is the sandbox's /proc for the container's proc mounts: the
// clone sandboxProcTree made, attached at the first one, then clones of
// that mount (a mount can only be cloned from the caller's namespace; the
// first clone is in none).
type procTree struct {
	fd    int    // the detached clone; -1 once attached
	first string // where it was attached
}

// mount mounts the sandbox's /proc at dst with a spec mount's flags.
// Options a procfs takes itself (hidepid, subset) would change the
// sandbox's too, which shares the superblock: refused.
func (t *procTree) mount(dst string, o mountOptions) error {
	if o.data != "" {
		return fmt.Errorf("options %q: a /proc of the pod sandbox's pid namespace has the sandbox's", o.data)
	}
	fd := t.fd
	if fd < 0 {
		var err error
		if fd, err = unix.OpenTree(unix.AT_FDCWD, t.first, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC); err != nil {
			return fmt.Errorf("clone: %w", err)
		}
	}
	t.fd = -1
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	for _, f := range []struct {
		flag uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	} {
		if o.flags&f.flag != 0 {
			attr.Attr_set |= f.attr
		}
	}
	attr.Attr_clr &^= attr.Attr_set
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("set flags: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if t.first == "" {
		t.first = dst
	}
	return nil
}

// close drops the clone if no proc mount used it.
func (t *procTree) close() {
	if t != nil && t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// joinPodPidNS makes the sandbox's pid namespace that of this process's
// children, while it still has the privilege to (see runInitChild).
func joinPodPidNS() error {
	if err := unix.Setns(childPodPidNSFd, unix.CLONE_NEWPID); err != nil {
		return fmt.Errorf("join the pod sandbox's pid namespace: %w", err)
	}
	unix.Close(childPodPidNSFd)
	return nil
}

// forkStopped is the end of an init child in the pod sandbox's pid
// namespace (see the top of this file): everything is applied, and the
// workload is forked under ptrace, so that it stops right after its
// execve. The child reports it ready with its pid, waits for the start
// byte, detaches the workload, reports the exec and exits. The workload
// dies if the agent drops the container first; the child exits if the
// workload is killed before start. Go's fork child only sets up its
// session and terminal and asks to be traced. The seccomp filter, loaded
// before the fork under no_new_privs, must then allow what the child does
// afterwards: wait4, ppoll, read, write, ptrace, kill, exit (and
// pidfd_open, without which a workload killed before start is only seen
// once the agent drops the container).
func forkStopped(report *os.File, path string, p *specs.Process, env []string, filter *seccompFilter) error {
	if filter != nil && p.NoNewPrivileges {
		if err := filter.load(); err != nil {
			return err
		}
	}
	pid, err := syscall.ForkExec(path, p.Args, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Ptrace: true, Setsid: p.Terminal, Setctty: p.Terminal, Ctty: 0},
	})
	if err != nil {
		return &ExecError{Name: p.Args[0], Err: err}
	}
	var ws unix.WaitStatus
	for {
		_, err = unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("wait for the workload's exec: %w", err)
	}
	if !ws.Stopped() {
		return fmt.Errorf("workload ended before start (status %d)", exitStatus(ws))
	}
	writeReport(report, childReport{Stage: stageReady, Pid: pid})
	fds := []unix.PollFd{{Fd: childStartFd, Events: unix.POLLIN}}
	// Without a pidfd (a profile that denies pidfd_open), a workload killed
	// before start is seen when the agent drops the container.
	if pidfd, err := unix.PidfdOpen(pid, 0); err == nil {
		fds = append(fds, unix.PollFd{Fd: int32(pidfd), Events: unix.POLLIN})
	}
	for {
		_, err := unix.Ppoll(fds, nil, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("wait for start: %w", err)
		}
		if len(fds) > 1 && fds[1].Revents != 0 {
			// Killed before start: its exit is the agent's to see, once
			// this process is gone.
			os.Exit(1)
		}
		if fds[0].Revents != 0 {
			break
		}
	}
	var b [1]byte
	n, err := unix.Read(childStartFd, b[:])
	if err != nil || n == 0 {
		// The agent dropped the container before start.
		unix.Kill(pid, unix.SIGKILL)
		os.Exit(1)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("release the workload: %w", err)
	}
	writeReport(report, childReport{Stage: stageExec, Pid: pid})
	os.Exit(0)
	return nil
}
