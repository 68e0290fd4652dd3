// Package guest is the agent that runs as the guest's PID 1: it boots the
// guest, then serves the host's requests and creates the container processes.
package guest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// Server answers the host's requests inside the guest.
type Server struct {
	log      *slog.Logger
	reaper   *reaper
	powerOff func()

	mu         sync.Mutex
	containers map[string]*container // guarded by mu
	creating   map[string]bool       // guarded by mu: ids whose init is being set up
	shells     map[string]*os.File   // guarded by mu: the running debug shells' ptys, by id

	// netMu serializes network requests: two scans never interleave.
	netMu sync.Mutex
}

type container struct {
	id     string
	spec   *specs.Spec
	rootfs string
	procs  map[string]*process // guarded by Server.mu; "" is the init process
}

// process is one guest process and the agent's ends of its stdio.
//
// Its life, as runc's: an init is spawned at create and waits, set up, just
// before execve (created: init set, execed false); start releases it
// (running: execed); it exits (stopped: exited closed). An exec process
// exists only as pipes until start spawns it.
type process struct {
	id   string
	spec *specs.Process

	stdinW   *os.File // nil once a stdin stream has attached
	stdoutR  *os.File
	stderrR  *os.File
	child    Stdio // the child's ends, closed after spawn
	attached map[string]bool

	// A terminal's pty is made by the container child (in the container's
	// devpts): an init's at create, an exec's at start. So ptmx is nil
	// until spawned is closed; a pty stream attached before waits for it.
	// A resize that comes first is kept in winsize and applied then.
	ptmx    *os.File      // guarded by Server.mu
	winsize *unix.Winsize // guarded by Server.mu

	// init is the container's init as create left it; nil for an exec.
	init    *Init
	pid     int
	started bool // guarded by Server.mu: start was asked for
	execed  bool // guarded by Server.mu: the workload has been execve'd
	// override, when not 0, is the status waiters see instead of the real
	// one: that of an init killed or failed before its workload ran.
	override int           // guarded by Server.mu
	spawned  chan struct{} // closed once pid is set (or the spawn failed)
	exited   chan struct{} // closed once status is set
	status   int
	// oomKills (an init only): the container cgroup's OOM kill count when
	// the init exited. Set before exited is closed.
	oomKills uint64
}

// NewServer returns a server; powerOff is called after a shutdown request
// has been answered.
func NewServer(log *slog.Logger, powerOff func()) *Server {
	return &Server{
		log:        log,
		reaper:     newReaper(),
		powerOff:   powerOff,
		containers: map[string]*container{},
		creating:   map[string]bool{},
		shells:     map[string]*os.File{},
	}
}

// Serve writes the agent.Hello frame on conn and then serves yamux streams on it
// until the connection ends.
func (s *Server) Serve(conn io.ReadWriteCloser, hello agent.Hello) error {
	go s.reaper.run()
	hello.Version = agent.ProtocolVersion
	if err := agent.WriteFrame(conn, hello); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false // the port has no idle timeout to defeat
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		return fmt.Errorf("start yamux: %w", err)
	}
	for {
		st, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept stream: %w", err)
		}
		go s.handle(st)
	}
}

func (s *Server) handle(st net.Conn) {
	var req agent.Request
	if err := agent.ReadFrame(st, &req); err != nil {
		s.log.Warn("bad request", "err", err)
		st.Close()
		return
	}
	t := time.Now()
	resp, after := s.dispatch(&req, st)
	s.log.Debug("request handled", "op", req.Op, "container", req.Container, "took", time.Since(t))
	if err := agent.WriteFrame(st, resp); err != nil {
		s.log.Warn("send response", "op", req.Op, "err", err)
		st.Close()
		return
	}
	if after != nil && resp.Error == "" {
		after(st)
		return
	}
	st.Close()
}

// dispatch runs one request. A non-nil func takes over the stream after the
// response has been written (stdio).
func (s *Server) dispatch(req *agent.Request, st net.Conn) (*agent.Response, func(net.Conn)) {
	switch req.Op {
	case agent.OpPing:
		return &agent.Response{}, nil
	case agent.OpCreate:
		return errResp(s.create(req)), nil
	case agent.OpExec:
		return errResp(s.prepareExec(req)), nil
	case agent.OpStart:
		pid, err := s.start(req)
		r := errResp(err)
		r.Pid = pid
		return r, nil
	case agent.OpStdio:
		return s.stdio(req)
	case agent.OpWait:
		p, err := s.lookup(req.Container, req.Exec)
		if err != nil {
			return errResp(err), nil
		}
		if req.Lifeline {
			go s.watchLifeline(st, req.Container, p)
		}
		<-p.exited
		s.mu.Lock()
		status, oomKills := p.status, p.oomKills
		s.mu.Unlock()
		return &agent.Response{ExitStatus: status, OOMKilled: oomKills > 0, OOMKills: oomKills}, nil
	case agent.OpSignal:
		return errResp(s.signal(req)), nil
	case agent.OpResize:
		return errResp(s.resize(req)), nil
	case agent.OpState:
		return s.state(req), nil
	case agent.OpPs:
		pids, err := s.ps(req.Container)
		r := errResp(err)
		r.Pids = pids
		return r, nil
	case agent.OpDelete:
		return errResp(s.delete(req.Container)), nil
	case agent.OpPause:
		return errResp(s.pause(req.Container)), nil
	case agent.OpResume:
		return errResp(s.resume(req.Container)), nil
	case agent.OpStats:
		st, oomKills, err := s.stats(req.Container)
		r := errResp(err)
		r.Stats, r.OOMKills = st, oomKills
		return r, nil
	case agent.OpUpdate:
		return errResp(s.update(req.Container, req.Resources)), nil
	case agent.OpNetwork:
		return errResp(s.network(req.Network)), nil
	case agent.OpDebugShell:
		return s.debugShell(req)
	case agent.OpPorts, agent.OpDial:
		return s.portForward(req)
	case agent.OpShutdown:
		// Data first: with it synced the host may stop the VM as soon as
		// it has the answer, without waiting for the power-off below.
		unix.Sync()
		return &agent.Response{Synced: true}, func(st net.Conn) {
			st.Close()
			// Give the response a moment to cross the port before the
			// guest goes away.
			time.Sleep(20 * time.Millisecond)
			s.powerOff()
		}
	}
	return errResp(&agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: fmt.Sprintf("unknown operation %q", req.Op)}), nil
}

func errResp(err error) *agent.Response {
	if err == nil {
		return &agent.Response{}
	}
	r := &agent.Response{Error: err.Error()}
	var re *agent.RemoteError
	var ee *ExecError
	switch {
	case errors.As(err, &re):
		r.ErrorKind = re.Kind
	case errors.As(err, &ee):
		r.ErrorKind = agent.ErrKindExecutable
	}
	return r
}

func notFound(format string, a ...any) error {
	return &agent.RemoteError{Kind: agent.ErrKindNotFound, Msg: fmt.Sprintf(format, a...)}
}

func badState(format string, a ...any) error {
	return &agent.RemoteError{Kind: agent.ErrKindState, Msg: fmt.Sprintf(format, a...)}
}

// create sets up the container's init up to its execve, as runc's create
// does, so that a mount that cannot be made or a missing executable fails
// here and leaves no container behind.
func (s *Server) create(req *agent.Request) error {
	if req.Container == "" || req.Spec == nil || req.Spec.Process == nil || req.Rootfs == "" {
		return &agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "create: container, spec with process and rootfs are required"}
	}
	id := req.Container
	s.mu.Lock()
	if _, ok := s.containers[id]; ok || s.creating[id] {
		s.mu.Unlock()
		return badState("container %s already exists", id)
	}
	p, err := newProcess("", req.Spec.Process)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	// The setup takes a while (a mount can hang): other requests go on
	// meanwhile.
	sandboxPid := 0
	if req.Sandbox != "" && req.Sandbox != id {
		sb, ok := s.containers[req.Sandbox]
		if !ok {
			s.mu.Unlock()
			return notFound("pod sandbox container %s does not exist", req.Sandbox)
		}
		if init := sb.procs[""]; !isClosed(init.exited) {
			sandboxPid = init.pid
		}
	}
	s.creating[id] = true
	s.mu.Unlock()

	s.reaper.Lock()
	init, err := SpawnPodInit(id, req.Spec, req.Rootfs, p.child, sandboxPid)
	var exitCh <-chan int
	if err == nil {
		exitCh = s.reaper.registerLocked(init.Process.Pid)
	}
	s.reaper.Unlock()
	closeStdio(p.child)
	if err != nil {
		p.closeAgentEnds()
		s.mu.Lock()
		delete(s.creating, id)
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	p.init, p.pid, p.ptmx = init, init.Process.Pid, init.Console
	close(p.spawned)
	delete(s.creating, id)
	s.containers[id] = &container{
		id: id, spec: req.Spec, rootfs: req.Rootfs,
		procs: map[string]*process{"": p},
	}
	s.mu.Unlock()
	go s.waitExit(id, p, exitCh)
	s.log.Info("container created", "container", id, "pid", p.pid)
	return nil
}

// network configures the guest's NICs (see configureNetwork).
func (s *Server) network(ifaces []agent.Interface) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if err := configureNetwork(ifaces); err != nil {
		return fmt.Errorf("configure network: %w", err)
	}
	s.log.Info("network configured", "nics", describeNICs(ifaces))
	return nil
}

func (s *Server) prepareExec(req *agent.Request) error {
	if req.Exec == "" || req.Process == nil {
		return &agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "exec: an exec id and a process are required"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[req.Container]
	if !ok {
		return notFound("container %s does not exist", req.Container)
	}
	if _, ok := c.procs[req.Exec]; ok {
		return badState("process %s already exists in container %s", req.Exec, req.Container)
	}
	if init := c.procs[""]; !init.started || isClosed(init.exited) {
		return badState("cannot exec in a container that is not running")
	}
	p, err := newProcess(req.Exec, req.Process)
	if err != nil {
		return err
	}
	c.procs[req.Exec] = p
	return nil
}

// newProcess makes the stdio pipes of a process before it starts, so the
// host can attach its streams first and lose no output. A terminal gets its
// pty at spawn time (see process.ptmx).
func newProcess(id string, spec *specs.Process) (*process, error) {
	p := &process{id: id, spec: spec, exited: make(chan struct{}), spawned: make(chan struct{}), attached: map[string]bool{}}
	if spec.Terminal {
		return p, nil
	}
	var fds [6]*os.File
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range fds[:2*i] {
				f.Close()
			}
			return nil, fmt.Errorf("make stdio pipe: %w", err)
		}
		fds[2*i], fds[2*i+1] = r, w
	}
	p.child = Stdio{Stdin: fds[0], Stdout: fds[3], Stderr: fds[5]}
	p.stdinW, p.stdoutR, p.stderrR = fds[1], fds[2], fds[4]
	return p, nil
}

func (s *Server) lookup(cid, eid string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[cid]
	if !ok {
		return nil, notFound("container %s does not exist", cid)
	}
	p, ok := c.procs[eid]
	if !ok {
		return nil, notFound("process %s does not exist in container %s", eid, cid)
	}
	return p, nil
}

func (s *Server) start(req *agent.Request) (int, error) {
	s.mu.Lock()
	c, ok := s.containers[req.Container]
	var p *process
	if ok {
		p, ok = c.procs[req.Exec]
	}
	if !ok {
		s.mu.Unlock()
		return 0, notFound("process %q of container %s does not exist", req.Exec, req.Container)
	}
	if p.started {
		s.mu.Unlock()
		return 0, badState("process %q of container %s was already started", req.Exec, req.Container)
	}
	if isClosed(p.exited) {
		s.mu.Unlock()
		return 0, badState("cannot start a container that has stopped")
	}
	p.started = true
	initPid := c.procs[""].pid
	s.mu.Unlock()
	if p.init != nil {
		refreshSharedAttrs(c.spec)
		return s.startInit(c.id, p)
	}

	s.reaper.Lock()
	proc, console, err := SpawnExec(c.id, initPid, c.spec, p.spec, p.child)
	var exitCh <-chan int
	if err == nil {
		exitCh = s.reaper.registerLocked(proc.Pid)
	}
	s.reaper.Unlock()
	closeStdio(p.child)
	if err != nil {
		// The process never ran: its stdio streams end now and it counts as
		// exited, so waiters are not left hanging.
		s.mu.Lock()
		p.status = 127
		s.mu.Unlock()
		p.closeAgentEnds()
		close(p.spawned)
		close(p.exited)
		return 0, err
	}
	s.mu.Lock()
	p.pid = proc.Pid
	p.execed = true
	if console != nil {
		if p.winsize != nil {
			if err := setWinsize(console, p.winsize); err != nil {
				s.log.Warn("apply early resize", "container", c.id, "exec", p.id, "err", err)
			}
		}
		p.ptmx = console
	}
	s.mu.Unlock()
	close(p.spawned)
	go s.waitExit(c.id, p, exitCh)
	s.log.Info("process started", "container", c.id, "exec", p.id, "pid", proc.Pid)
	return proc.Pid, nil
}

// exitWait bounds how long an operation waits for a process it killed to
// be reaped, so that it can report the process stopped.
const exitWait = 10 * time.Second

// startInit releases the created init to exec its workload. If execve
// fails, the init exits with status 127, as a process that never ran.
func (s *Server) startInit(cid string, p *process) (int, error) {
	if err := p.init.Start(); err != nil {
		s.mu.Lock()
		if p.override == 0 {
			p.override = 127
		}
		s.mu.Unlock()
		// It exits by itself after reporting; this covers one that did not.
		if !isClosed(p.exited) {
			unix.Kill(p.pid, unix.SIGKILL)
		}
		select {
		case <-p.exited:
		case <-time.After(exitWait):
		}
		return 0, err
	}
	s.mu.Lock()
	p.execed = true
	s.mu.Unlock()
	s.log.Info("process started", "container", cid, "exec", p.id, "pid", p.pid)
	return p.pid, nil
}

// drainGrace is how long output pipes may stay open after their process
// exited (a background child can hold them); then they are closed.
const drainGrace = 500 * time.Millisecond

// execRetention is how long an exited exec process stays known, for late
// waiters; then it is forgotten, so a container that runs execs all its life
// (health checks) does not make the agent grow.
var execRetention = time.Minute

func (s *Server) waitExit(cid string, p *process, exitCh <-chan int) {
	status := <-exitCh
	var oomKills uint64
	if p.id == "" {
		oomKills = s.oomKills(cid)
	}
	s.mu.Lock()
	if p.override != 0 {
		status = p.override
	}
	p.status, p.oomKills = status, oomKills
	s.mu.Unlock()
	for _, f := range []*os.File{p.stdoutR, p.stderrR, p.ptmx} {
		if f != nil {
			f.SetReadDeadline(time.Now().Add(drainGrace))
		}
	}
	close(p.exited)
	s.log.Info("process exited", "exec", p.id, "pid", p.pid, "status", status)
	if p.id == "" {
		return
	}
	time.AfterFunc(execRetention, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c, ok := s.containers[cid]; ok && c.procs[p.id] == p {
			delete(c.procs, p.id)
		}
	})
}

func closeStdio(st Stdio) {
	for _, f := range []*os.File{st.Stdin, st.Stdout, st.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *process) closeAgentEnds() {
	for _, f := range []*os.File{p.stdinW, p.stdoutR, p.stderrR, p.ptmx} {
		if f != nil {
			f.Close()
		}
	}
}

func (s *Server) stdio(req *agent.Request) (*agent.Response, func(net.Conn)) {
	p, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return errResp(err), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.attached[req.Stream] {
		return errResp(badState("stream %s is already attached", req.Stream)), nil
	}
	var f *os.File
	switch {
	case req.Stream == agent.StreamPTY && p.spec.Terminal:
		// f is the pty, known once the process is spawned.
	case req.Stream == agent.StreamStdin && p.stdinW != nil:
		f = p.stdinW
	case req.Stream == agent.StreamStdout && p.stdoutR != nil:
		f = p.stdoutR
	case req.Stream == agent.StreamStderr && p.stderrR != nil:
		f = p.stderrR
	default:
		return errResp(&agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: fmt.Sprintf("process has no %s stream", req.Stream)}), nil
	}
	p.attached[req.Stream] = true
	return &agent.Response{}, func(st net.Conn) {
		switch req.Stream {
		case agent.StreamStdin:
			io.Copy(f, st)
			f.Close()
		case agent.StreamPTY:
			<-p.spawned
			s.mu.Lock()
			f = p.ptmx
			s.mu.Unlock()
			if f == nil {
				break // never started
			}
			go io.Copy(f, st)
			io.Copy(st, f)
			f.Close()
		default:
			io.Copy(st, f)
			f.Close()
		}
		st.Close()
	}
}

// watchLifeline kills p if the waiter's stream ends before p exits: the
// host process standing in for p is gone.
func (s *Server) watchLifeline(st net.Conn, cid string, p *process) {
	var b [1]byte
	st.Read(b[:])
	if isClosed(p.exited) {
		return
	}
	s.log.Warn("stand-in gone, killing its process", "container", cid, "exec", p.id)
	s.kill(cid, p, unix.SIGKILL, p.id == "")
}

// kill signals a process of container cid, or with all every process of
// the container (see signalAll), even once the process has exited. A
// process that has not run its workload ends as if the signal had killed
// it, as runc's kill of a created container does: an exec not yet started
// is discarded, a created init is killed.
func (s *Server) kill(cid string, p *process, sig unix.Signal, all bool) error {
	s.mu.Lock()
	if !p.execed && !isClosed(p.exited) && (p.init != nil || !p.started) {
		if sig == unix.SIGCHLD || sig == unix.SIGURG || sig == unix.SIGWINCH || sig == unix.SIGCONT {
			s.mu.Unlock()
			return nil // ignored by default: nothing happens
		}
		if p.init == nil {
			p.discardLocked(128 + int(sig))
			s.mu.Unlock()
			return nil
		}
		if p.override == 0 {
			p.override = 128 + int(sig)
		}
		s.mu.Unlock()
		return s.killCreated(p)
	}
	pid, started := p.pid, p.started
	s.mu.Unlock()
	if started {
		// A start in progress: signal the process once it exists.
		select {
		case <-p.spawned:
		case <-time.After(30 * time.Second):
		}
		s.mu.Lock()
		pid = p.pid
		s.mu.Unlock()
	}
	if all {
		return s.signalAll(cid, pid, isClosed(p.exited), sig)
	}
	if pid == 0 || isClosed(p.exited) {
		return badState("process is not running")
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
	}
	return nil
}

// killCreated kills an init waiting for its start and waits until it has
// been reaped, so that the container is stopped when kill returns. Only
// SIGKILL is certain to end it: it is pid 1 of its pid namespace, which
// ignores signals it has no handler for, and the Go runtime's handlers do
// what they like with the others; p.override carries the signal asked for.
func (s *Server) killCreated(p *process) error {
	if err := unix.Kill(p.pid, unix.SIGKILL); err != nil && !isClosed(p.exited) {
		return fmt.Errorf("kill created init %d: %w", p.pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(exitWait):
		return fmt.Errorf("created init %d did not exit after SIGKILL", p.pid)
	}
}

// discardLocked ends a process that was never started as if it had exited
// with status: its streams end (a pty stream waiting for its pty too) and
// its waiters return. The caller holds Server.mu.
func (p *process) discardLocked(status int) {
	p.started = true
	p.status = status
	closeStdio(p.child)
	p.closeAgentEnds()
	close(p.spawned)
	close(p.exited)
}

func (s *Server) signal(req *agent.Request) error {
	p, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	return s.kill(req.Container, p, unix.Signal(req.Signal), req.All)
}

func (s *Server) resize(req *agent.Request) error {
	if req.Container == agent.DebugDir {
		return s.resizeDebugShell(req.Exec, &unix.Winsize{Row: req.Height, Col: req.Width})
	}
	p, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	if !p.spec.Terminal {
		return badState("process has no terminal")
	}
	ws := &unix.Winsize{Row: req.Height, Col: req.Width}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.ptmx == nil {
		p.winsize = ws // not spawned yet
		return nil
	}
	return setWinsize(p.ptmx, ws)
}

func (s *Server) state(req *agent.Request) *agent.Response {
	p, err := s.lookup(req.Container, "")
	if err != nil {
		return errResp(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case isClosed(p.exited):
		return &agent.Response{Status: "stopped", Pid: p.pid, ExitStatus: p.status}
	case !p.execed:
		// Set up and waiting for start (or being started).
		return &agent.Response{Status: "created", Pid: p.pid}
	}
	pid := p.pid
	s.mu.Unlock()
	// Paused is read from the container's cgroup, never from a flag.
	paused := s.paused(req.Container)
	s.mu.Lock()
	if paused {
		return &agent.Response{Status: "paused", Pid: pid}
	}
	return &agent.Response{Status: "running", Pid: pid}
}

func (s *Server) delete(cid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[cid]
	if !ok {
		return notFound("container %s does not exist", cid)
	}
	if init := c.procs[""]; init.started && !isClosed(init.exited) {
		return badState("container %s is still running", cid)
	}
	for _, p := range c.procs {
		switch {
		case p.init != nil && !p.started:
			// Created, or stopped while created: Start never closed its
			// pipes. Its waitExit ends its streams and waiters.
			p.init.Close()
			if !isClosed(p.exited) {
				if p.override == 0 {
					p.override = 128 + int(unix.SIGKILL)
				}
				unix.Kill(p.pid, unix.SIGKILL)
			}
		case !p.started:
			p.discardLocked(128 + int(unix.SIGKILL))
		}
	}
	delete(s.containers, cid)
	// The cgroup lives from create to delete, as runc's does: the OOM count
	// of a later container of the same id must start at zero.
	init := c.procs[""]
	if isClosed(init.exited) {
		s.removeCgroup(cid)
	} else {
		go func() {
			select {
			case <-init.exited:
			case <-time.After(exitWait):
			}
			s.removeCgroup(cid)
		}()
	}
	return nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
