package guest

// Starting container processes without cgo.
//
// A Go process cannot safely fork and then run arbitrary code before execve,
// and it cannot setns(2) into a mount namespace once it has more than one
// thread. So, like runc, the agent re-executes itself (/proc/self/exe) with a
// magic argv[1]; that fresh process does the container setup on one locked
// thread and then execs the workload. The parent hands it its configuration as
// JSON on one pipe (fd 3) and reads its reports on another (fd 4), which the
// child marks close-on-exec: the child writes {"stage":"exec"} just before
// execve, so "stage seen, then EOF" means the workload is running, an error
// report means setup failed, and EOF alone means the child died before it could
// say why. A process with a terminal makes its pty itself and sends the
// master back on a socket (fd 6): see console_linux.go. An init stops short
// of execve until it is started: see init_linux.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// Magic argv[1] values that turn the agent binary into a container child.
const (
	childInitArg = "__runvirt_init"
	childExecArg = "__runvirt_exec"
)

// Descriptors the child finds open (after the three stdio ones).
const (
	childConfigFd = 3 // read end of the config pipe
	childReportFd = 4 // write end of the report pipe
	childMntNSFd  = 5 // exec only: the container's mount namespace
	childConsFd   = 6 // terminal only: where the pty master is sent
	childStartFd  = 7 // init only: read end of the start pipe
	childPidNSFd  = 7 // exec only: the container's pid namespace
)

// Stages a child reports.
const (
	stageReady = "ready" // init: set up, waiting for the start byte
	stageExec  = "exec"  // execve is next
)

// maxReportSize bounds what the parent reads from a child; a report is one
// short error message.
const maxReportSize = 64 << 10

// Stdio are the files the new process gets as fds 0,1,2. A nil file is
// replaced by /dev/null so that the workload never starts with a closed
// standard descriptor. A process with a terminal (Process.Terminal) ignores
// them: its stdio is the pty it makes in the container.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// ExecError is returned when the workload itself cannot be executed. Its
// message has runc's wording (it is exec.Error's), because clients map it to
// exit codes: docker turns "no such file or directory" and "executable file
// not found" into 127 and "permission denied" into 126.
type ExecError struct {
	Name string // the executable as the spec names it (args[0])
	Err  error  // the cause; wraps the errno where there was one
}

func (e *ExecError) Error() string {
	return "exec: " + strconv.Quote(e.Name) + ": " + e.Err.Error()
}

func (e *ExecError) Unwrap() error { return e.Err }

// remoteErr carries an error message and errno across the report pipe, so that
// errors.Is(err, unix.ENOENT) still works in the parent.
type remoteErr struct {
	msg   string
	errno unix.Errno
}

func (e *remoteErr) Error() string { return e.msg }

func (e *remoteErr) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// childConfig is what the parent sends the child on fd 3.
type childConfig struct {
	ID      string         `json:"id"`
	Spec    *specs.Spec    `json:"spec,omitempty"`   // init only
	Rootfs  string         `json:"rootfs,omitempty"` // init only
	Process *specs.Process `json:"process"`
	// NewCgroupNS asks the child to unshare its cgroup namespace itself, once
	// it is inside its cgroup (a namespace made at clone time would be rooted
	// at the agent's cgroup).
	NewCgroupNS bool `json:"new_cgroup_ns,omitempty"`
	// Cgroup is the container's cgroup directory in the agent's tree ("" for
	// none): what a cgroup mount that cannot be made in a user namespace
	// binds instead.
	Cgroup string `json:"cgroup,omitempty"`
	// Terminal: the child makes a pty in the container's devpts, makes it
	// its stdio (and the init's /dev/console) and sends the master on fd 6.
	Terminal bool `json:"terminal,omitempty"`
	// Seccomp is the container's linux.seccomp, for the init and for every
	// exec alike.
	Seccomp *specs.LinuxSeccomp `json:"seccomp,omitempty"`
	// PodPidNS (init only): the container shares the pod sandbox's pid
	// namespace, whose files are fds 8 and 9 (see podpid_linux.go).
	PodPidNS bool `json:"pod_pid_ns,omitempty"`
}

// childReport is one message from the child on fd 4.
type childReport struct {
	Stage string `json:"stage,omitempty"` // stageReady or stageExec
	// Pid (an exec's stageExec) is the workload the exec child forked,
	// already running: the exec child itself is not the workload. In the
	// stageReady of an init in the pod sandbox's pid namespace, it is the
	// workload forked stopped (see podpid_linux.go).
	Pid      int    `json:"pid,omitempty"`
	Error    string `json:"error,omitempty"`
	Errno    int    `json:"errno,omitempty"`
	ExecName string `json:"exec_name,omitempty"` // set when Error is an ExecError
}

// SpawnInit sets up the init process of a container whose root filesystem is at rootfs
// (a guest path, already mounted, writable by the agent) and returns it waiting for
// Init.Start; an error means the setup or the executable lookup failed and no process
// is left waiting. The child gets stdio now, so output is never lost; the caller may
// close its copies of those files on return. The caller reaps the process (a PID-1
// reaper loop uses wait4(-1)); SpawnInit never waits for it. When spec.Process.Terminal
// is set, Init.Console is the master of the process's pty (made in the container's
// devpts, sized to ConsoleSize).
func SpawnInit(id string, spec *specs.Spec, rootfs string, stdio Stdio) (*Init, error) {
	return SpawnPodInit(id, spec, rootfs, stdio, 0)
}

// SpawnPodInit is SpawnInit for a container of a pod: the namespaces whose
// path in spec is agent.SandboxNamespace are those of sandboxPid (the pod's
// sandbox container's init) instead of new ones. In the sandbox's pid
// namespace, Init.Process is the workload, forked there stopped once the
// container is set up (see podpid_linux.go), not the child that set it up.
func SpawnPodInit(id string, spec *specs.Spec, rootfs string, stdio Stdio, sandboxPid int) (*Init, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("spawn init %s: spec has no process args", id)
	}
	if err := validateUserNS(spec.Linux); err != nil {
		return nil, fmt.Errorf("spawn init %s: %w", id, err)
	}
	joins, err := sandboxJoins(spec, sandboxPid)
	if err != nil {
		return nil, fmt.Errorf("spawn init %s: %w", id, err)
	}
	flags, newCgroupNS := initCloneFlags(spec)
	// The pid namespace is joined by the child, for its workload only (see
	// podpid_linux.go); the others by the forking thread.
	var podNS []*os.File
	threadJoins := joins[:0:0]
	for _, j := range joins {
		flags &^= uintptr(j.flag)
		if j.flag != unix.CLONE_NEWPID {
			threadJoins = append(threadJoins, j)
			continue
		}
		pidNS, mntNS, err := openPodPidNS(j.pid)
		if err != nil {
			return nil, fmt.Errorf("spawn init %s: %w", id, err)
		}
		defer pidNS.Close()
		defer mntNS.Close()
		podNS = []*os.File{pidNS, mntNS}
	}
	cg, err := setupCgroup(id, spec.Linux)
	if err != nil {
		return nil, fmt.Errorf("spawn init %s: %w", id, err)
	}
	cfg := &childConfig{
		ID: id, Spec: spec, Rootfs: rootfs, Process: spec.Process,
		NewCgroupNS: containerCgroupNS(newCgroupNS, cg != nil), Terminal: spec.Process.Terminal,
		Seccomp: containerSeccomp(spec), PodPidNS: podNS != nil,
	}
	if cg != nil {
		defer cg.Close()
		cfg.Cgroup = cgroupDir(id)
	}
	sys := &syscall.SysProcAttr{Cloneflags: flags}
	if newUserNS(spec) {
		setUserNSMaps(sys, spec.Linux)
	}
	var init *Init
	if len(threadJoins) == 0 {
		init, err = spawnInitChild(cfg, stdio, sys, cg, podNS)
	} else {
		init, err = spawnJoined(threadJoins, func() (*Init, error) { return spawnInitChild(cfg, stdio, sys, cg, podNS) })
	}
	if err != nil {
		if cg != nil {
			// Best effort: the child may still be exiting (EBUSY), and an
			// empty cgroup left behind only leaks a directory.
			_ = RemoveCgroup(id)
		}
		return nil, wrapSpawnError("spawn init "+id, err)
	}
	return init, nil
}

// nsJoin is a namespace a new init joins instead of making its own.
type nsJoin struct {
	name string // as in /proc/<pid>/ns/
	flag int
	pid  int
}

// sandboxJoins lists the namespaces of spec that are the pod sandbox's.
func sandboxJoins(spec *specs.Spec, sandboxPid int) ([]nsJoin, error) {
	if spec.Linux == nil {
		return nil, nil
	}
	names := map[specs.LinuxNamespaceType]nsJoin{
		specs.IPCNamespace: {name: "ipc", flag: unix.CLONE_NEWIPC},
		specs.UTSNamespace: {name: "uts", flag: unix.CLONE_NEWUTS},
		specs.PIDNamespace: {name: "pid", flag: unix.CLONE_NEWPID},
	}
	var out []nsJoin
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != agent.SandboxNamespace {
			continue
		}
		j, ok := names[ns.Type]
		if !ok {
			return nil, fmt.Errorf("the %s namespace cannot be shared with the pod sandbox", ns.Type)
		}
		if sandboxPid <= 0 {
			return nil, fmt.Errorf("%s namespace: the pod sandbox container is not running", ns.Type)
		}
		if newUserNS(spec) {
			return nil, fmt.Errorf("%s namespace: a container with its own user namespace cannot share the pod sandbox's", ns.Type)
		}
		j.pid = sandboxPid
		out = append(out, j)
	}
	return out, nil
}

// spawnJoined runs spawn on a locked OS thread that has joined the given
// namespaces first (a child inherits its namespaces from the forking
// thread). The thread is never unlocked: the runtime ends it afterwards.
func spawnJoined(joins []nsJoin, spawn func() (*Init, error)) (*Init, error) {
	type result struct {
		init *Init
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		for _, j := range joins {
			f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", j.pid, j.name))
			if err != nil {
				done <- result{nil, fmt.Errorf("open the pod sandbox's %s namespace: %w", j.name, err)}
				return
			}
			err = unix.Setns(int(f.Fd()), j.flag)
			f.Close()
			if err != nil {
				done <- result{nil, fmt.Errorf("join the pod sandbox's %s namespace: %w", j.name, err)}
				return
			}
		}
		init, err := spawn()
		done <- result{init, err}
	}()
	r := <-done
	return r.init, r.err
}

// wrapSpawnError adds context to a setup error but returns an ExecError as it
// is: clients match its exact wording.
func wrapSpawnError(context string, err error) error {
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee
	}
	return fmt.Errorf("%s: %w", context, err)
}

// initCloneFlags returns the namespaces a container init is cloned into. The
// mount, pid, ipc and uts namespaces are always new; a network namespace entry
// without a path gets a new one (with a path, the host has mapped networking
// into the guest's own namespace). A cgroup namespace is not made at clone
// time but reported separately (see childConfig.NewCgroupNS). A new user
// namespace is added with its maps by setUserNSMaps.
func initCloneFlags(spec *specs.Spec) (flags uintptr, newCgroupNS bool) {
	flags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS
	if spec.Linux == nil {
		return flags, false
	}
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.NetworkNamespace:
			if ns.Path == "" {
				flags |= unix.CLONE_NEWNET
			}
		case specs.CgroupNamespace:
			newCgroupNS = true
		}
	}
	return flags, newCgroupNS
}

// child is a container child that has been started and sent its config.
type child struct {
	proc     *os.Process
	repR     *os.File // the parent's end of the report pipe
	reports  *reportReader
	consSock int // the parent's end of the console socket; -1 without a terminal
}

// startChild starts the agent binary as a container child and sends it its
// config. mntNS, when not nil, becomes the child's fd 5, fd7 fd 7 (an
// init's start pipe, an exec's pid namespace) and extra fds 8 on. The
// caller reads the child's reports and closes repR and the console socket.
func startChild(mode string, cfg *childConfig, stdio Stdio, sys *syscall.SysProcAttr, cg, mntNS, fd7 *os.File, extra ...*os.File) (*child, error) {
	if cfg.Terminal {
		// The child makes the pty its own stdio.
		stdio = Stdio{}
	}
	files, closeStdio, err := stdioFiles(stdio)
	if err != nil {
		return nil, err
	}
	defer closeStdio()
	if cg != nil {
		sys.UseCgroupFD, sys.CgroupFD = true, int(cg.Fd())
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("config pipe: %w", err)
	}
	defer cfgW.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, fmt.Errorf("report pipe: %w", err)
	}
	ch := &child{repR: repR, reports: newReportReader(repR), consSock: -1}
	fail := func(err error) (*child, error) {
		ch.closeConsoleSock()
		repR.Close()
		return nil, err
	}
	files = append(files, cfgR, repW, mntNS) // a nil mntNS leaves fd 5 closed
	var consChild *os.File
	if cfg.Terminal {
		// A session leader without a terminal: the child makes the pty its
		// controlling terminal.
		sys.Setsid = true
		if ch.consSock, consChild, err = consoleSocket(); err != nil {
			cfgR.Close()
			repW.Close()
			return fail(err)
		}
	}
	files = append(files, consChild) // nil: fd 6 closed
	if fd7 != nil {
		files = append(files, fd7)
		files = append(files, extra...)
	}
	p, err := os.StartProcess("/proc/self/exe", []string{os.Args[0], mode}, &os.ProcAttr{
		Files: files,
		Env:   []string{},
		Sys:   sys,
	})
	// Our copies of the child's ends must go, or EOF never comes.
	cfgR.Close()
	repW.Close()
	if consChild != nil {
		consChild.Close()
	}
	if err != nil {
		return fail(fmt.Errorf("start child: %w", err))
	}
	ch.proc = p
	// The child waits for its config, so these apply before it runs.
	if err := applyFromParent(p.Pid, cfg.Process); err != nil {
		_ = p.Kill()
		return fail(err)
	}
	if err := sendConfig(cfgW, cfg); err != nil {
		_ = p.Kill()
		return fail(err)
	}
	return ch, nil
}

// console takes the pty master the child sent: nil without a terminal. It
// is called once the child has reported (or died), after it sent the master
// if it ever will.
func (c *child) console() (*os.File, error) {
	if c.consSock < 0 {
		return nil, nil
	}
	return recvConsole(c.consSock)
}

func (c *child) closeConsoleSock() {
	if c.consSock >= 0 {
		unix.Close(c.consSock)
		c.consSock = -1
	}
}

// stdioFiles returns fds 0-2 for the child, opening /dev/null for missing ones.
func stdioFiles(stdio Stdio) ([]*os.File, func(), error) {
	var null *os.File
	closeNull := func() {
		if null != nil {
			null.Close()
		}
	}
	files := []*os.File{stdio.Stdin, stdio.Stdout, stdio.Stderr}
	for i, f := range files {
		if f != nil {
			continue
		}
		if null == nil {
			var err error
			if null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
				return nil, nil, fmt.Errorf("open stdio: %w", err)
			}
		}
		files[i] = null
	}
	return files, closeNull, nil
}

func sendConfig(w *os.File, cfg *childConfig) error {
	defer w.Close()
	if err := json.NewEncoder(w).Encode(cfg); err != nil {
		return fmt.Errorf("send config to child: %w", err)
	}
	return nil
}

func reportError(rep childReport) error {
	cause := &remoteErr{msg: rep.Error, errno: unix.Errno(rep.Errno)}
	if rep.ExecName != "" {
		return &ExecError{Name: rep.ExecName, Err: cause}
	}
	return cause
}

// validateID keeps a container ID usable as one path element (it names the
// guest cgroup).
func validateID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// MaybeRunChild must be called first thing in the agent's main(). If os.Args show that this
// process is a re-exec'd container child, it performs the child's work and never returns;
// otherwise it returns immediately.
func MaybeRunChild() {
	if len(os.Args) < 2 || (os.Args[1] != childInitArg && os.Args[1] != childExecArg) {
		return
	}
	// Everything per-thread (capabilities, bounding set, namespaces joined,
	// the unshared fs_struct) must be done on the thread that calls execve.
	runtime.LockOSThread()
	report := os.NewFile(childReportFd, "report")
	err := runChild(os.Args[1])
	// Only reached on failure: success ends in execve.
	writeReport(report, errorReport(err))
	os.Exit(1)
}

func runChild(mode string) error {
	unix.CloseOnExec(childReportFd)
	cfg, err := readConfig()
	if err != nil {
		return err
	}
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return errors.New("child config has no process")
	}
	if mode == childInitArg {
		return runInitChild(cfg)
	}
	return runExecChild(cfg)
}

func readConfig() (*childConfig, error) {
	f := os.NewFile(childConfigFd, "config")
	defer f.Close()
	var cfg childConfig
	if err := json.NewDecoder(f).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("read child config: %w", err)
	}
	return &cfg, nil
}

func errorReport(err error) childReport {
	if err == nil {
		err = errors.New("container child failed")
	}
	rep := childReport{Error: err.Error()}
	var errno unix.Errno
	if errors.As(err, &errno) {
		rep.Errno = int(errno)
	}
	var ee *ExecError
	if errors.As(err, &ee) {
		rep.ExecName = ee.Name
		rep.Error = ee.Err.Error()
	}
	return rep
}

func writeReport(w *os.File, rep childReport) {
	// Nothing to do on failure: the parent sees EOF and reports that.
	_ = json.NewEncoder(w).Encode(rep)
}

// runInitChild sets up the container around itself and execs the workload.
func runInitChild(cfg *childConfig) error {
	spec := cfg.Spec
	if spec == nil {
		return errors.New("child config has no spec")
	}
	// Devices and mountpoints are created with exact modes; the spec's umask
	// applies to the workload only.
	unix.Umask(0)
	if cfg.NewCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	lastCap, err := lastCapability()
	if err != nil {
		return err
	}
	var proc *procTree
	if cfg.PodPidNS {
		if proc, err = sandboxProcTree(); err != nil {
			return err
		}
	}
	err = prepareRootfs(spec, cfg.Rootfs, cfg.Cgroup, proc)
	proc.close()
	if err != nil {
		return err
	}
	// As runc: after the container's mounts and the pivot (the pty must
	// come from its devpts), before the rootfs is finished.
	if cfg.Terminal {
		// A workload forked in the pod's pid namespace takes the pty as its
		// controlling terminal itself, in a session of its own.
		if err := setupConsole(childConsFd, cfg.Process.ConsoleSize, true, !cfg.PodPidNS); err != nil {
			return err
		}
	}
	if err := finishRootfs(spec); err != nil {
		return err
	}
	if err := setUTS(spec); err != nil {
		return err
	}
	// runc creates a missing cwd, as root and before / may become read-only.
	if cwd := cfg.Process.Cwd; cwd != "" {
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return fmt.Errorf("create cwd %s: %w", cwd, err)
		}
	}
	if err := readonlyRoot(spec); err != nil {
		return err
	}
	if cfg.PodPidNS {
		// Only for the children, and while this process still may.
		if err := joinPodPidNS(); err != nil {
			return err
		}
	}
	return finishProcess(cfg.Process, cfg.Seccomp, lastCap, true, cfg.PodPidNS)
}

// finishProcess applies the process-level settings, common to init and exec,
// in runc's order, and execs the workload. An init (await) first waits for
// its start byte, after everything that can fail but execve itself. An exec
// (fork) forks the workload instead, with everything applied: credentials,
// no_new_privs, the seccomp filter and rlimits are inherited, and the fork
// execs at once (forkWorkload). An init in the pod sandbox's pid namespace
// (both) forks it stopped and releases it at start (forkStopped).
//
// The seccomp filter (sc, when not nil) is compiled first, so that a bad
// profile fails like any setup error, and loaded as late as it can be, as
// runc does: with no_new_privs, right before execve; without, loading it
// needs CAP_SYS_ADMIN, so just before applyCreds drops capabilities, and the
// profile must then allow what follows (credentials, chdir, the executable
// lookup, the reports and start wait on the pipes, execve).
//
// Before either, whatever the spec says, the filter that refuses
// open_by_handle_at (handles_linux.go) is loaded, while the process still
// has CAP_SYS_ADMIN: no_new_privs stays as the spec asks.
func finishProcess(p *specs.Process, sc *specs.LinuxSeccomp, lastCap int, await, fork bool) error {
	handles, err := handlesFilter()
	if err != nil {
		return err
	}
	var filter *seccompFilter
	if sc != nil {
		if filter, err = compileSeccomp(sc); err != nil {
			return fmt.Errorf("seccomp profile: %w", err)
		}
	}
	// Before any filter: a profile need not allow close_range (the OCI
	// validation suite's default one does not), and the fds stay usable
	// until execve.
	if err := closeExtraFds(); err != nil {
		return err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// A cwd only the workload's user may enter is entered after the switch.
	chdirErr := unix.Chdir(cwd)
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	env := processEnv(p)
	if err := handles.load(); err != nil {
		return fmt.Errorf("refuse open_by_handle_at: %w", err)
	}
	if filter != nil && !p.NoNewPrivileges {
		if err := filter.load(); err != nil {
			return err
		}
	}
	if err := applyCreds(p, lastCap); err != nil {
		return err
	}
	if chdirErr != nil {
		if err := unix.Chdir(cwd); err != nil {
			return fmt.Errorf("chdir to cwd %s: %w", cwd, err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	umask := uint32(0o022)
	if p.User.Umask != nil {
		umask = *p.User.Umask
	}
	unix.Umask(int(umask))
	path, err := lookPath("", p.Args[0], envValue(env, "PATH"))
	if err != nil {
		return err
	}
	report := os.NewFile(childReportFd, "report")
	if fork && await {
		return forkStopped(report, path, p, env, filter)
	}
	if fork {
		return forkWorkload(report, path, p, env, filter)
	}
	if await {
		writeReport(report, childReport{Stage: stageReady})
		if err := awaitStart(); err != nil {
			return err
		}
	}
	writeReport(report, childReport{Stage: stageExec})
	if filter != nil && p.NoNewPrivileges {
		// A failure is still reported: the parent reads until EOF.
		if err := filter.load(); err != nil {
			return err
		}
	}
	err = syscall.Exec(path, p.Args, env)
	return &ExecError{Name: p.Args[0], Err: err}
}

// closeExtraFds marks every fd above stdio close-on-exec so that nothing of
// the agent leaks into the workload (the report pipe closes at execve too).
func closeExtraFds() error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark fds close-on-exec: %w", err)
	}
	return nil
}

// applyFromParent sets what a child in a user namespace could not set
// itself, as runc's parent does: oom_score_adj (lowering it needs
// CAP_SYS_RESOURCE in the guest's namespace) and rlimits (raising a hard
// limit needs it too). The child sets the rlimits again, which is then a
// no-op that keeps Go from restoring its own RLIMIT_NOFILE at execve.
func applyFromParent(pid int, p *specs.Process) error {
	if p.OOMScoreAdj != nil {
		v := strconv.Itoa(*p.OOMScoreAdj)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(v), 0); err != nil {
			return fmt.Errorf("set oom_score_adj %s: %w", v, err)
		}
	}
	for _, r := range p.Rlimits {
		res, ok := rlimitNames[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", r.Type)
		}
		if err := unix.Prlimit(pid, res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}, nil); err != nil {
			return fmt.Errorf("set %s to %d/%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// setUTS applies hostname and domainname, in the container's new UTS
// namespace or, in a pod, the sandbox's (as runc sets it in a joined one).
func setUTS(spec *specs.Spec) error {
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("set domainname %q: %w", spec.Domainname, err)
		}
	}
	return nil
}
