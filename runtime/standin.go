package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/nsexec"
	"golang.org/x/sys/unix"
)

// StandInCommand is the hidden CLI command that runs RunStandIn.
const StandInCommand = "stand-in"

// A stand-in is the host process a client sees for one guest process (the
// container's init or an exec). Its pid goes in --pid-file: containerd's
// shim, conmon and docker wait on it and reap it for the exit status. It
// inherits the stdio the client passed (or owns the host side of the
// console), relays it to the guest process, forwards every signal it gets,
// and exits with the guest process's status. It lives in the container's
// network namespace, because docker's hooks find the namespace through it.

// nsPlan is how a stand-in gets the container's namespaces: new ones
// through clone flags, existing ones (by path) joined before the fork. The
// stand-in mirrors the spec's namespaces, so what clients and hooks read from
// /proc/<pid>/ns/* is the container's, with two exceptions: never a user
// namespace (it must stay root to reach the sandbox's sockets), and never a
// new pid namespace, whose init it would be: an init cannot die of a signal
// it raises itself, and the stand-in must die of its process's signal.
type nsPlan struct {
	clone uintptr
	join  []nsJoin
}

type nsJoin struct {
	path string
	flag int // CLONE_NEW* of the namespace type
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
}

// nsPlanOf reads the plan from a spec.
func nsPlanOf(spec *specs.Spec) nsPlan {
	var p nsPlan
	if spec.Linux == nil {
		return p
	}
	for _, ns := range spec.Linux.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			continue
		}
		if ns.Path == "" {
			if flag != unix.CLONE_NEWPID {
				p.clone |= uintptr(flag)
			}
		} else {
			p.join = append(p.join, nsJoin{path: ns.Path, flag: flag})
		}
	}
	return p
}

// joining returns the plan with the namespace of type flag joined at path
// instead of made or joined elsewhere.
func (p nsPlan) joining(flag int, path string) nsPlan {
	q := nsPlan{clone: p.clone &^ uintptr(flag)}
	for _, j := range p.join {
		if j.flag != flag {
			q.join = append(q.join, j)
		}
	}
	q.join = append(q.join, nsJoin{path: path, flag: flag})
	return q
}

// nsPlanOfProcess joins every namespace of a running stand-in, for the
// stand-ins of exec processes.
func nsPlanOfProcess(spec *specs.Spec, pid int) nsPlan {
	var p nsPlan
	names := map[int]string{
		unix.CLONE_NEWNET: "net", unix.CLONE_NEWIPC: "ipc", unix.CLONE_NEWUTS: "uts",
		unix.CLONE_NEWPID: "pid", unix.CLONE_NEWNS: "mnt", unix.CLONE_NEWCGROUP: "cgroup",
	}
	for _, ns := range nsPlanOf(spec).all() {
		name := names[ns]
		if name == "pid" {
			// A process's pid namespace for children is pid_for_children.
			name = "pid_for_children"
		}
		p.join = append(p.join, nsJoin{path: fmt.Sprintf("/proc/%d/ns/%s", pid, name), flag: ns})
	}
	return p
}

// all lists every namespace type the plan touches.
func (p nsPlan) all() []int {
	var out []int
	for _, f := range nsFlags {
		if p.clone&uintptr(f) != 0 {
			out = append(out, f)
		}
	}
	for _, j := range p.join {
		out = append(out, j.flag)
	}
	return out
}

// standInSpec is how to start one stand-in.
type standInSpec struct {
	g             Globals
	d             Dir    // the container's state dir
	exec          string // "" for the init process
	terminal      bool
	consoleSocket string
	ns            nsPlan
	stdio         []*os.File // stdin, stdout, stderr when there is no console
}

// standInLogArg is the --log flag of every stand-in of a container: a path
// no other container shares, by which HostPids finds the exec stand-ins.
func standInLogArg(d Dir) string { return "--log=" + d.join("stand-in.log") }

// spawnStandIn starts a stand-in and waits until it has attached the
// guest process's stdio and its lifeline, so no output is lost and the
// process cannot outlive it.
func spawnStandIn(s standInSpec) (ProcessRef, error) {
	exe, err := os.Executable()
	if err != nil {
		return ProcessRef{}, fmt.Errorf("find own executable: %w", err)
	}
	// As for the monitor (startMonitor): values joined, the id after "--".
	args := []string{"--root=" + s.g.Root, standInLogArg(s.d), "--log-format=json"}
	if s.g.Debug {
		args = append(args, "--debug")
	}
	args = append(args, StandInCommand)
	if s.exec != "" {
		args = append(args, "--exec="+s.exec)
	}
	if s.terminal {
		args = append(args, "--tty")
	}
	args = append(args, "--", s.d.ID)
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	pr, pw, err := os.Pipe()
	if err != nil {
		return ProcessRef{}, fmt.Errorf("ready pipe: %w", err)
	}
	defer pr.Close()
	cmd.ExtraFiles = []*os.File{pw}

	if s.consoleSocket != "" {
		ptmx, tty, err := pty.Open()
		if err != nil {
			pw.Close()
			return ProcessRef{}, fmt.Errorf("allocate console: %w", err)
		}
		defer tty.Close()
		err = sendConsole(s.consoleSocket, ptmx)
		ptmx.Close()
		if err != nil {
			pw.Close()
			return ProcessRef{}, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	} else if len(s.stdio) == 3 {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s.stdio[0], s.stdio[1], s.stdio[2]
	}

	err = startInNamespaces(cmd, s.ns)
	pw.Close()
	if err != nil {
		return ProcessRef{}, fmt.Errorf("start stand-in: %w", err)
	}
	// The stand-in outlives us; whoever inherits it (the client's
	// subreaper) reaps it. Until we exit, release it so Go does not.
	ref, rerr := RefOf(cmd.Process.Pid)
	if rerr != nil {
		ref = ProcessRef{Pid: cmd.Process.Pid}
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	if line == "ok\n" {
		cmd.Process.Release()
		return ref, nil
	}
	cmd.Process.Kill()
	cmd.Wait()
	if msg := strings.TrimSpace(line); msg != "" {
		return ProcessRef{}, errors.New(msg)
	}
	return ProcessRef{}, fmt.Errorf("stand-in exited before it was ready (%v); see %s", err, s.d.join("stand-in.log"))
}

// startInNamespaces starts cmd in the planned namespaces. Joining happens
// on a locked OS thread that forks the child and then dies, since setns
// only changes the calling thread (and the mount namespace needs the
// thread's own fs_struct first).
func startInNamespaces(cmd *exec.Cmd, p nsPlan) error {
	cmd.SysProcAttr.Cloneflags |= p.clone
	if len(p.join) == 0 {
		return cmd.Start()
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, j := range p.join {
		f, err := os.Open(j.path)
		if err != nil {
			return fmt.Errorf("open namespace %s: %w", j.path, err)
		}
		files = append(files, f)
	}
	// The thread is in other namespaces afterwards, and the child started
	// from it inherits them.
	return nsexec.Throwaway(func() error {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare fs: %w", err)
		}
		for i, j := range p.join {
			if err := unix.Setns(int(files[i].Fd()), j.flag); err != nil {
				return fmt.Errorf("join namespace %s: %w", j.path, err)
			}
		}
		return cmd.Start()
	})
}

// sendConsole passes the console's master to the client over its socket,
// as runc does: the pty name as data, the fd as SCM_RIGHTS.
func sendConsole(socket string, master *os.File) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return fmt.Errorf("connect to console socket: %w", err)
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("console socket %s is not a unix socket", socket)
	}
	_, _, err = uc.WriteMsgUnix([]byte(master.Name()), unix.UnixRights(int(master.Fd())), nil)
	if err != nil {
		return fmt.Errorf("send console: %w", err)
	}
	return nil
}

// RunStandIn is the body of the hidden stand-in command. It returns only on
// failure before the guest process ran; otherwise it exits the way the
// guest process did.
func RunStandIn(g Globals, id, execID string, terminal bool, ready *os.File, log *slog.Logger) error {
	report := func(err error) error {
		fmt.Fprintf(ready, "%s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		ready.Close()
		return err
	}
	sigs, stop := NotifySignals()
	defer stop()
	c, err := Load(g, id, log)
	if err != nil {
		return report(err)
	}
	relay := &Relay{
		Client: c.client(), Container: id, Exec: execID, Terminal: terminal,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Log: log,
	}
	if terminal && isTerminal(os.Stdin) {
		// The guest's pty does the line discipline; ours passes bytes.
		if restore, err := makeRaw(os.Stdin); err == nil {
			defer restore()
		}
	}
	ctx := context.Background()
	if err := relay.Attach(ctx); err != nil {
		return report(err)
	}
	w, err := relay.Client.WaitStream(ctx, id, execID, true)
	if err != nil {
		relay.Close()
		return report(err)
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	status, err := relay.Wait(ctx, w, sigs)
	if err != nil {
		// The VM is gone (QEMU or the monitor was killed): to the client the
		// process died as if SIGKILLed.
		log.Error("lost the guest process", "container", id, "exec", execID, "err", err)
		status = 128 + int(syscall.SIGKILL)
	}
	if execID == "" && w.OOMKilled() {
		// Before the exit: clients tie the OOM to the task that exits next.
		if err := ReflectOOM(log); err != nil {
			log.Error("the container was oom-killed in the guest; telling the host cgroup failed", "container", id, "err", err)
		}
	}
	stop()
	exitLike(status)
	return nil
}

// exitLike ends this process the way the guest process ended: killed by
// the same signal (so a waiting client sees WIFSIGNALED), or with its code.
func exitLike(status int) {
	if status > 128 && status < 128+65 {
		sig := syscall.Signal(status - 128)
		switch sig {
		case syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU,
			// Go's runtime reports these itself (as a crash) even when sent
			// by kill: exit with the code instead.
			syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL,
			syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGABRT, syscall.SIGQUIT:
		default:
			signal.Reset(sig)
			unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) // no core file
			syscall.Kill(os.Getpid(), sig)
		}
	}
	os.Exit(status)
}
