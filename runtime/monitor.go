package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/hypervisor"
	"golang.org/x/sys/unix"
)

// The monitor is one host process per sandbox, started detached by the verb
// that creates the sandbox. It owns the VM: it starts virtiofsd and QEMU, holds
// the one connection to the guest agent (a virtio-serial port accepts a single
// client, and a vsock connection is the same single stream here), multiplexes
// it with yamux, and turns every connection to its unix socket into a yamux
// stream, so any short-lived runvirt process can talk to the agent. When QEMU
// exits it stops virtiofsd, removes its sockets and exits.

// monitorReady is what the monitor reports on its ready pipe.
type monitorReady struct {
	Error  string     `json:"error,omitempty"`
	Kernel string     `json:"kernel,omitempty"`
	Boot   BootTiming `json:"boot"`
}

// BootTiming is when the VM's milestones were reached, for the debug log
// and the benchmarks.
type BootTiming struct {
	QEMUStarted time.Time `json:"qemu_started"`
	AgentReady  time.Time `json:"agent_ready"`
	// GuestMillis is the guest's own uptime at agent ready: kernel boot
	// plus agent start-up (the rest of the gap is QEMU and firmware).
	GuestMillis int64 `json:"guest_ms"`
}

// vmHandles are the resources of a running VM that the monitor tears down.
type vmHandles struct {
	qemu        *exec.Cmd
	qemuStarted time.Time
	qemuDone    chan struct{}
	virtiofsd   *exec.Cmd
	fsDone      chan struct{} // closed when virtiofsd has exited
	conn        net.Conn      // the agent connection
	listener    io.Closer
	vhost       *os.File
	lease       *uidLease       // QEMU's uid, released once QEMU is gone
	consoleDone <-chan struct{} // closed once the guest console's copy ended
}

// RunMonitor is the body of the hidden `runvirt monitor` command. ready is
// the pipe on which the starting verb waits; it is closed once the VM's agent
// has said hello, or after the error has been written.
func RunMonitor(d Dir, ready *os.File, log *slog.Logger) error {
	// QEMU and virtiofsd die with the thread that started them
	// (PR_SET_PDEATHSIG is per thread): start them from this goroutine's
	// thread, kept for the monitor's life, never from one that Go may end
	// (a thread whose locked goroutine exits is terminated).
	goruntime.LockOSThread()
	LimitHelperMemory()
	st, err := LoadState(d)
	if err != nil {
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}
	cfg := st.Config
	log = log.With("sandbox", d.ID, "component", "monitor")
	// Before QEMU and virtiofsd start: see joinHostMemoryCgroup. Only the
	// accounting suffers if it fails.
	if spec, err := (&Container{Dir: d, State: st}).Spec(); err != nil {
		log.Warn("no host memory cgroup for the vm", "err", err)
	} else if err := joinHostMemoryCgroup(spec, d.ID); err != nil {
		log.Warn("no host memory cgroup for the vm", "err", err)
	}

	// Clients may connect as soon as the socket exists; they wait in the
	// backlog until the agent is ready.
	os.Remove(d.AgentSocket())
	ln, err := net.Listen("unix", d.AgentSocket())
	if err != nil {
		err = fmt.Errorf("listen on %s: %w", d.AgentSocket(), err)
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}
	defer os.Remove(d.AgentSocket())
	defer ln.Close()

	// The monitor and virtiofsd have a memory limit of their own; QEMU
	// is started outside it (helpercgroup.go).
	hc, err := newHelperCgroup(d, cfg.HelperMemoryMiB)
	if err != nil {
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}
	h, hello, err := startVM(d, cfg, st.Network, hc, log)
	if err != nil {
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}
	timing := BootTiming{QEMUStarted: h.qemuStarted, AgentReady: time.Now(), GuestMillis: hello.BootMillis}
	defer h.stop(d, log)
	if err := hc.enter(os.Getpid()); err != nil {
		err = fmt.Errorf("helper cgroup: %w", err)
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}

	// A guest that breaks the protocol cannot be talked to again: its VM
	// is stopped, and the sandbox with it.
	sess, err := guestSession(h.conn, func(error) { h.qemu.Process.Kill() }, log)
	if err != nil {
		err = fmt.Errorf("start yamux: %w", err)
		reportReady(ready, monitorReady{Error: err.Error()})
		return err
	}
	defer sess.Close()
	reportReady(ready, monitorReady{Kernel: hello.Kernel, Boot: timing})
	// Asking QEMU for its state takes a QMP round trip: not on the path of
	// the create call that is waiting for the proxy below.
	go func() { log.Info("sandbox ready", "kernel", hello.Kernel, "qmp_status", qmpStatus(d)) }()

	// SIGTERM or SIGINT to the monitor stops the VM.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	go func() {
		select {
		case s := <-sigs:
			log.Info("stopping vm on signal", "signal", s)
			h.qemu.Process.Signal(unix.SIGTERM)
		case <-h.qemuDone:
		}
	}()
	go func() {
		<-h.qemuDone
		ln.Close()
		sess.Close()
	}()
	go stopWhenInitExits(sess, d.ID, h.qemuDone, log)
	fwDone := startPortForward(d, st, sess, h.qemuDone, log)
	serveProxy(ln, sess, log)
	<-h.qemuDone
	<-fwDone
	log.Info("vm stopped", "status", h.qemu.ProcessState.String())
	return nil
}

// startPortForward mirrors the guest's localhost listeners into the pod's
// network namespace (see portfwd.go) for a CRI pod sandbox with one, until
// stop closes. The channel closes once nothing of it is left.
func startPortForward(d Dir, st *State, sess *yamux.Session, stop chan struct{}, log *slog.Logger) chan struct{} {
	done := make(chan struct{})
	netns := portForwardNetNS(d, st, log)
	if netns == "" {
		close(done)
		return done
	}
	if err := loopbackUp(netns); err != nil {
		log.Warn("port-forward: loopback of the pod's network namespace", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	go func() {
		defer close(done)
		newPortForwarder(sess, d.ID, netns, log).run(ctx)
	}()
	return done
}

// portForwardNetNS is the network namespace the CRI runtimes dial
// localhost in to forward a port of sandbox d's pod, or "" when d is no CRI
// pod sandbox or its pod shares the host's network (which a VM's listeners
// are never mirrored into).
func portForwardNetNS(d Dir, st *State, log *slog.Logger) string {
	if !isCRISandbox(st.Annotations) {
		return ""
	}
	spec, err := (&Container{Dir: d, State: st}).Spec()
	if err != nil {
		log.Warn("port-forward is off", "err", err)
		return ""
	}
	netns, _ := networkNamespace(spec)
	return netns
}

// initExitGrace is how long the VM outlives the sandbox container's init:
// time for the stand-in to get the exit status and for the last output to
// cross.
const initExitGrace = time.Second

// stopWhenInitExits powers the VM off once the sandbox container's init
// has exited, as nothing runs on after a runc container stops. The monitor
// must not outlive the container: clients such as conmon adopt it and wait
// for every child before they report the exit. delete still finds the
// state (and the stopped status) afterwards.
func stopWhenInitExits(sess *yamux.Session, id string, qemuDone chan struct{}, log *slog.Logger) {
	client := &agent.Client{Dial: func(context.Context) (net.Conn, error) { return sess.OpenStream() }}
	for !isClosed(qemuDone) {
		status, err := client.Wait(context.Background(), id, "")
		var re *agent.RemoteError
		if errors.As(err, &re) && re.Kind == agent.ErrKindNotFound {
			// Not created yet: the verb that booted us creates it next.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			return // the VM is going away
		}
		log.Info("sandbox container exited; stopping the vm", "status", status)
		time.Sleep(initExitGrace)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := client.Shutdown(ctx); err != nil {
			log.Warn("guest shutdown", "err", err)
		}
		cancel()
		return
	}
}

// qmpStatus asks QEMU for its run state, within a deadline; it is logged
// so the monitor log shows the VM as QEMU sees it.
func qmpStatus(d Dir) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q, err := hypervisor.DialQMP(ctx, d.QMPSocket())
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer q.Close()
	st, err := q.Status(ctx)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return st
}

func reportReady(ready *os.File, m monitorReady) {
	if ready == nil {
		return
	}
	json.NewEncoder(ready).Encode(m)
	ready.Close()
}

// startVM starts the sandbox's VM and waits for the agent's hello: restored
// from the configuration's template when it has one (made first if
// missing), booted otherwise, and booted after all if the restore fails.
func startVM(d Dir, cfg SandboxConfig, network *SandboxNetwork, hc *helperCgroup, log *slog.Logger) (*vmHandles, agent.Hello, error) {
	base := baseVM(d, cfg)
	tmpl := templateFor(cfg, base, network, log)
	if tmpl == nil {
		return startVMFrom(d, cfg, base, network, nil, hc, log)
	}
	h, hello, err := startVMFrom(d, cfg, base, network, tmpl, hc, log)
	if err == nil {
		log.Info("vm restored from a template", "template", tmpl.dir)
		return h, hello, nil
	}
	log.Warn("restoring the template failed; booting instead, and removing the template", "template", tmpl.dir, "err", err)
	tmpl.remove()
	return startVMFrom(d, cfg, base, network, nil, hc, log)
}

// baseVM is the sandbox's VM without the files QEMU inherits: what its
// template's key is made of, and what each start copies.
func baseVM(d Dir, cfg SandboxConfig) *hypervisor.VM {
	vm := &hypervisor.VM{
		ID: d.ID, QEMU: cfg.QEMU, Kernel: cfg.Kernel, Initrd: cfg.Initrd,
		Machine: cfg.Machine, Accel: cfg.Accel, VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB,
		SharedFS: cfg.SharedFS, ShareDir: d.Share(), Transport: cfg.Transport,
		ConsoleLog:   d.ConsoleLog(),
		KernelParams: cfg.KernelParams, Debug: cfg.Debug,
	}
	if cfg.Machine == "microvm" {
		vm.TSCkHz = hypervisor.HostTSCkHz()
	}
	return vm
}

// startVMFrom starts virtiofsd and QEMU, booting a copy of the base VM or,
// with tmpl, restoring it from that template, and waits for the agent's
// hello. virtiofsd starts in the helper cgroup hc, QEMU outside it.
func startVMFrom(d Dir, cfg SandboxConfig, base *hypervisor.VM, network *SandboxNetwork, tmpl *savedTemplate, hc *helperCgroup, log *slog.Logger) (h *vmHandles, hello agent.Hello, err error) {
	h = &vmHandles{qemuDone: make(chan struct{})}
	defer func() {
		if err != nil {
			h.stop(d, log)
		}
	}()
	v := *base
	vm := &v
	if tmpl != nil {
		state, err := os.Open(tmpl.state)
		if err != nil {
			return h, hello, fmt.Errorf("template: %w", err)
		}
		defer state.Close()
		vm.Template, vm.RAMFile, vm.Incoming = true, tmpl.ram, state
	}
	if vm.User, h.lease, err = qemuUserOf(cfg, UIDLeaseDir); err != nil {
		return h, hello, err
	}
	switch {
	case vm.User != nil:
		log.Info("qemu runs unprivileged", "user", vm.User.String(), "groups", vm.User.Groups)
	case cfg.SharedFS == "9p":
		log.Info("qemu runs as root: its 9p server opens the share's files as their owners (virtio-fs lets it run unprivileged)")
	default:
		log.Info("qemu runs as root (qemu_user = \"root\")")
	}
	// QEMU may not open these paths itself (see hypervisor.User): it gets
	// them open. None is readable by other users. The console is a pipe
	// to a log of bounded size (consolelog.go).
	console, consoleDone, err := startConsoleLog(d.ConsoleLog(), consoleLogMax(cfg.ConsoleLogKiB), log)
	if err != nil {
		return h, hello, err
	}
	h.consoleDone = consoleDone
	defer console.Close()
	vm.Console = console
	qmp, err := listenFile(d.QMPSocket())
	if err != nil {
		return h, hello, fmt.Errorf("qmp socket: %w", err)
	}
	defer qmp.Close()
	vm.QMP = qmp
	if err := os.MkdirAll(d.Share(), 0o711); err != nil {
		return h, hello, fmt.Errorf("make share: %w", err)
	}
	if cfg.SharedFS == "virtio-fs" {
		if err := h.startVirtiofsd(d, cfg, hc); err != nil {
			return h, hello, err
		}
		// virtiofsd's socket listens already: the connection waits in its
		// backlog until virtiofsd accepts it.
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: d.FSSocket(), Net: "unix"})
		if err != nil {
			return h, hello, fmt.Errorf("connect to virtiofsd: %w", err)
		}
		f, err := c.File()
		c.Close()
		if err != nil {
			return h, hello, fmt.Errorf("connect to virtiofsd: %w", err)
		}
		defer f.Close()
		vm.Virtiofsd = f
	}

	var accept func(time.Duration) (net.Conn, error)
	switch cfg.Transport {
	case "serial":
		conn, theirs, err := agentSocketPair()
		if err != nil {
			return h, hello, err
		}
		defer theirs.Close()
		h.conn = conn
		vm.AgentConn = theirs
	case "vsock":
		vhost, cid, err := hypervisor.ReserveCID()
		if err != nil {
			return h, hello, err
		}
		h.vhost = vhost
		ln, port, err := listenVsock()
		if err != nil {
			return h, hello, err
		}
		h.listener = ln
		vm.VhostFD, vm.GuestCID, vm.VsockPort = vhost, cid, port
		accept = func(timeout time.Duration) (net.Conn, error) {
			return acceptGuest(ln, cid, timeout)
		}
	}

	if network != nil {
		taps, err := network.openTaps()
		if err != nil {
			return h, hello, err
		}
		// QEMU holds its copies once started.
		defer func() {
			for _, f := range taps {
				f.Close()
			}
		}()
		for i, f := range taps {
			vm.Nets = append(vm.Nets, hypervisor.NetIface{Tap: f, MAC: network.Interfaces[i].Guest.MAC})
		}
	}

	cmd, err := vm.Command()
	if err != nil {
		return h, hello, err
	}
	// QEMU's complaints go to the monitor log, and the last of them into
	// a boot error: a failed create removes the log with the state.
	qemuErr := &tailWriter{max: 1024}
	cmd.Stdout, cmd.Stderr = os.Stderr, io.MultiWriter(os.Stderr, qemuErr)
	log.Debug("starting qemu", "args", cmd.Args)
	if err := cmd.Start(); err != nil {
		return h, hello, fmt.Errorf("start qemu: %w", err)
	}
	h.qemu, h.qemuStarted = cmd, time.Now()
	// With its start time: delete signals it only if it is still this
	// process, never a later one that got its pid.
	if ref, err := RefOf(cmd.Process.Pid); err == nil {
		writeProcessRef(d.QEMUPid(), ref)
	}
	go func() {
		cmd.Wait()
		close(h.qemuDone)
	}()

	deadline := time.Now().Add(cfg.BootTimeout)
	if tmpl != nil {
		if err := restoreTemplate(d.QMPSocket(), vm.IncomingURI(), cfg.BootTimeout); err != nil {
			if isClosed(h.qemuDone) {
				err = fmt.Errorf("%w; qemu exited (%s): %s", err, cmd.ProcessState, qemuErr.lastLine())
			}
			return h, hello, bootError(d, err)
		}
		if err := wake(h.conn, wakeMACs(network)); err != nil {
			return h, hello, bootError(d, err)
		}
	}
	if accept != nil {
		conn, err := acceptOrExit(accept, cfg.BootTimeout, h.qemuDone)
		if err != nil {
			return h, hello, bootError(d, err)
		}
		h.conn = conn
	}
	if err := readHello(h.conn, deadline, h.qemuDone, &hello); err != nil {
		if isClosed(h.qemuDone) {
			return h, hello, bootError(d, fmt.Errorf("qemu exited during boot (%s): %s", cmd.ProcessState, qemuErr.lastLine()))
		}
		return h, hello, bootError(d, fmt.Errorf("agent did not say hello within %s: %w", cfg.BootTimeout, err))
	}
	if hello.Version != agent.ProtocolVersion {
		return h, hello, fmt.Errorf("agent speaks protocol version %d, runvirt speaks %d: reinstall the guest image", hello.Version, agent.ProtocolVersion)
	}
	return h, hello, nil
}

// agentSocketPair makes the serial transport's connection to the agent:
// ours, and QEMU's end, which backs the virtio-serial port.
func agentSocketPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "agent"), os.NewFile(uintptr(fds[1]), "agent-qemu")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("agent socket: %w", err)
	}
	return conn, theirs, nil
}

// readHello reads the agent's hello by the deadline, giving up as soon as
// QEMU exits (qemuDone closes).
func readHello(conn net.Conn, deadline time.Time, qemuDone chan struct{}, hello *agent.Hello) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-qemuDone:
			conn.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	conn.SetReadDeadline(deadline)
	if err := agent.ReadFrame(conn, hello); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Time{})
	return nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = w.b[len(w.b)-w.max:]
	}
	return len(p), nil
}

// lastLine is the last non-empty line written, or a note that there was none.
func (w *tailWriter) lastLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(w.b)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "it printed nothing"
}

func bootError(d Dir, err error) error {
	return fmt.Errorf("start vm: %w; guest console: %s; monitor log: %s", err, d.ConsoleLog(), d.MonitorLog())
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// listenFile returns a unix socket listening on path, as a file to hand
// to a helper. The path stays when the helper exits; stop removes it.
func listenFile(path string) (*os.File, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The helper has the socket; ours only goes (and must not unlink it).
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	return ln.File()
}

func (h *vmHandles) startVirtiofsd(d Dir, cfg SandboxConfig, hc *helperCgroup) error {
	f, err := listenFile(d.FSSocket())
	if err != nil {
		return fmt.Errorf("virtiofsd socket: %w", err)
	}
	defer f.Close()
	cmd := hypervisor.VirtiofsdCommand(cfg.Virtiofsd, f, d.Share())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := hc.start(cmd); err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	h.virtiofsd = cmd
	h.fsDone = make(chan struct{})
	go func() {
		cmd.Wait()
		close(h.fsDone)
	}()
	return nil
}

// stop tears down whatever startVM started. QEMU is asked to stop by the
// caller; here it is killed if still running.
func (h *vmHandles) stop(d Dir, log *slog.Logger) {
	if h.qemu != nil && h.qemu.Process != nil && !isClosed(h.qemuDone) {
		h.qemu.Process.Kill()
		<-h.qemuDone
	}
	if h.virtiofsd != nil && h.virtiofsd.Process != nil {
		h.virtiofsd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.fsDone:
		case <-time.After(2 * time.Second):
			h.virtiofsd.Process.Kill()
			<-h.fsDone
		}
	}
	if h.consoleDone != nil {
		// QEMU is gone: the copy ends as soon as it has written the
		// console's last bytes.
		select {
		case <-h.consoleDone:
		case <-time.After(2 * time.Second):
			log.Warn("guest console copy did not end")
		}
	}
	if h.conn != nil {
		h.conn.Close()
	}
	if h.listener != nil {
		h.listener.Close()
	}
	if h.vhost != nil {
		h.vhost.Close()
	}
	// QEMU is gone: its uid may go to another sandbox.
	h.lease.release()
	os.Remove(d.QMPSocket())
	os.Remove(d.FSSocket())
	os.Remove(d.QEMUPid())
}

// listenVsock listens on a free vsock port of the host.
func listenVsock() (*vsock.Listener, uint32, error) {
	var lastErr error
	for i := 0; i < 32; i++ {
		port := 10000 + rand.Uint32N(1<<30)
		ln, err := vsock.Listen(port, nil)
		if err == nil {
			return ln, port, nil
		}
		lastErr = err
	}
	return nil, 0, fmt.Errorf("listen on vsock: %w", lastErr)
}

// acceptGuest accepts the agent's connection, refusing any other guest's.
func acceptGuest(ln *vsock.Listener, cid uint32, timeout time.Duration) (net.Conn, error) {
	ln.SetDeadline(time.Now().Add(timeout))
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("agent did not connect within %s: %w", timeout, err)
		}
		if a, ok := c.RemoteAddr().(*vsock.Addr); ok && a.ContextID == cid {
			return c, nil
		}
		c.Close()
	}
}

func acceptOrExit(accept func(time.Duration) (net.Conn, error), timeout time.Duration, exited chan struct{}) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := accept(timeout)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-exited:
		return nil, errors.New("qemu exited during boot")
	}
}

// waitGone waits until pid has exited, up to timeout.
func waitGone(ref ProcessRef, timeout time.Duration) bool {
	for t := time.Now(); time.Since(t) < timeout; time.Sleep(5 * time.Millisecond) {
		if !ref.Alive() {
			return true
		}
	}
	return !ref.Alive()
}

// connectAgent returns a client whose streams go through the monitor.
func connectAgent(d Dir) *agent.Client {
	path := d.AgentSocket()
	return &agent.Client{
		Dial: func(ctx context.Context) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", path)
		},
		Hint: "guest console: " + d.ConsoleLog() + "; monitor log: " + d.MonitorLog(),
	}
}
