package guest

// Exec: starting an extra process in a running container, as `runc exec`
// does. The child is the agent binary again (see spawn_linux.go); what is
// particular to an exec is where it joins the container's namespaces and
// that its workload is its own child (see SpawnExec).

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// execNamespaces are the namespaces SpawnExec joins from the parent side, in
// this order. The mount and pid namespaces are joined by the child (see
// runExecChild).
var execNamespaces = []struct {
	name string
	flag int
}{
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET},
}

// SpawnExec starts p inside the namespaces (mount, pid, ipc, uts, net, cgroup) of the
// running init process initPid of the container, as `runc exec` does. Same reaping rule
// as SpawnInit, and the same console for a p with a terminal. spec is the container's
// spec; only p's fields and its seccomp profile are applied.
//
// The ipc, uts, net and cgroup namespaces are joined by a throwaway OS
// thread of the agent, which then forks the child (a child inherits its
// namespaces from the forking thread). The mount namespace cannot be joined
// there because Go's threads share one fs_struct, so the child joins it after
// unsharing CLONE_FS on its own locked thread.
//
// The pid namespace is joined last, by the child, and only its own child,
// the workload, is in it: a process in the container's pid namespace is
// one the container can reach (/proc/PID/root, /proc/PID/fd, ptrace with
// CAP_SYS_PTRACE), and the exec child holds the guest's root and the
// agent's pipes until it has entered the mount namespace and dropped its
// privileges. So the child does all of that unseen, then forks the
// workload into the pid namespace, reports its pid and exits; the workload
// becomes the agent's child (PID 1 reaps orphans of its pid namespace),
// and proc is the workload.
func SpawnExec(id string, initPid int, spec *specs.Spec, p *specs.Process, stdio Stdio) (proc *os.Process, console *os.File, err error) {
	if err := validateID(id); err != nil {
		return nil, nil, err
	}
	if p == nil || len(p.Args) == 0 {
		return nil, nil, fmt.Errorf("spawn exec in %s: process has no args", id)
	}
	// An exec that joined every namespace but the user one would run as
	// the guest's real root inside a container whose root is not.
	same, err := sameUserNS(initPid)
	if err != nil {
		return nil, nil, fmt.Errorf("spawn exec in %s: %w", id, err)
	}
	if !same {
		return nil, nil, fmt.Errorf("spawn exec in %s: %w", id, errJoinUserNS)
	}
	mnt, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", initPid))
	if err != nil {
		return nil, nil, fmt.Errorf("spawn exec in %s: %w", id, err)
	}
	defer mnt.Close()
	pidNS, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", initPid))
	if err != nil {
		return nil, nil, fmt.Errorf("spawn exec in %s: %w", id, err)
	}
	defer pidNS.Close()
	cg, err := openCgroup(id)
	if err != nil {
		return nil, nil, fmt.Errorf("spawn exec in %s: %w", id, err)
	}
	if cg != nil {
		defer cg.Close()
	}
	cfg := &childConfig{ID: id, Process: p, Terminal: p.Terminal, Seccomp: containerSeccomp(spec)}

	type result struct {
		p       *os.Process
		console *os.File
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread's namespaces are changed for good, so
		// the runtime must end it when this goroutine returns.
		runtime.LockOSThread()
		if err := joinNamespaces(initPid); err != nil {
			done <- result{nil, nil, err}
			return
		}
		proc, console, err := spawnExecChild(cfg, stdio, cg, mnt, pidNS)
		done <- result{proc, console, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, nil, wrapSpawnError("spawn exec in "+id, r.err)
	}
	return r.p, r.console, nil
}

// containerSeccomp returns the seccomp profile of a container's spec, nil
// without one.
func containerSeccomp(spec *specs.Spec) *specs.LinuxSeccomp {
	if spec == nil || spec.Linux == nil {
		return nil
	}
	return spec.Linux.Seccomp
}

// spawnExecChild starts an exec child and waits for its verdict: the
// workload it forked, running. For a terminal it also returns the pty
// master the child sent.
func spawnExecChild(cfg *childConfig, stdio Stdio, cg, mntNS, pidNS *os.File) (*os.Process, *os.File, error) {
	ch, err := startChild(childExecArg, cfg, stdio, &syscall.SysProcAttr{}, cg, mntNS, pidNS)
	if err != nil {
		return nil, nil, err
	}
	defer ch.repR.Close()
	defer ch.closeConsoleSock()
	pid, err := ch.reports.untilForked()
	if err != nil {
		// The child exits by itself after reporting; kill covers a child
		// that got stuck.
		_ = ch.proc.Kill()
		return nil, nil, err
	}
	// The workload is the agent's to wait for; the exec child exits by
	// itself, and the reaper collects it.
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, nil, fmt.Errorf("find exec workload %d: %w", pid, err)
	}
	// The child sent the master before its exec report.
	console, err := ch.console()
	if err != nil {
		_ = proc.Kill()
		return nil, nil, err
	}
	return proc, console, nil
}

// joinNamespaces moves the calling (locked) thread into initPid's namespaces.
// All files are opened first so that a vanished init fails before anything
// changed.
func joinNamespaces(initPid int) error {
	files := make([]*os.File, 0, len(execNamespaces))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, ns := range execNamespaces {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", initPid, ns.name))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && ns.name == "cgroup" {
				files = append(files, nil) // kernel without cgroup namespaces
				continue
			}
			return fmt.Errorf("open %s namespace: %w", ns.name, err)
		}
		files = append(files, f)
	}
	for i, ns := range execNamespaces {
		if files[i] == nil {
			continue
		}
		if err := unix.Setns(int(files[i].Fd()), ns.flag); err != nil {
			return fmt.Errorf("join %s namespace of pid %d: %w", ns.name, initPid, err)
		}
	}
	return nil
}

// runExecChild joins the container's mount and pid namespaces (the others
// were inherited from the parent's thread) and forks the workload into the
// pid namespace (see SpawnExec).
func runExecChild(cfg *childConfig) error {
	unix.Umask(0)
	lastCap, err := lastCapability()
	if err != nil {
		return err
	}
	// setns(CLONE_NEWNS) needs an fs_struct of our own; this thread is locked,
	// so the rest of the setup and execve see the new root.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(childMntNSFd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join mount namespace: %w", err)
	}
	unix.Close(childMntNSFd)
	// Only for the children: this process stays where the container cannot
	// see it.
	if err := unix.Setns(childPidNSFd, unix.CLONE_NEWPID); err != nil {
		return fmt.Errorf("join pid namespace: %w", err)
	}
	unix.Close(childPidNSFd)
	if cfg.Terminal {
		// The workload makes the pty its controlling terminal: it leads a
		// session of its own, which outlives this process.
		if err := setupConsole(childConsFd, cfg.Process.ConsoleSize, false, false); err != nil {
			return err
		}
	}
	return finishProcess(cfg.Process, cfg.Seccomp, lastCap, false, true)
}

// forkWorkload starts the exec's workload as a child of this process,
// reports its pid and exits. Go's fork child only sets up its session and
// terminal (a terminal exec's workload leads a session with the pty as its
// controlling terminal, as runc's does) and execs; ForkExec returns once the
// execve succeeded, so the report means running. The filter, loaded last
// under no_new_privs as for an init, must then allow the fork (clone,
// pipe2, read, setsid, ioctl, dup3, execve) and this process's report and
// exit: any profile that lets the workload start programs does.
func forkWorkload(report *os.File, path string, p *specs.Process, env []string, filter *seccompFilter) error {
	if filter != nil && p.NoNewPrivileges {
		if err := filter.load(); err != nil {
			return err
		}
	}
	pid, err := syscall.ForkExec(path, p.Args, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: p.Terminal, Setctty: p.Terminal, Ctty: 0},
	})
	if err != nil {
		return &ExecError{Name: p.Args[0], Err: err}
	}
	writeReport(report, childReport{Stage: stageExec, Pid: pid})
	os.Exit(0)
	return nil
}
