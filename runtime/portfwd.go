package runtime

// Port-forward for CRI pods (kubectl port-forward). containerd's CRI plugin
// and CRI-O forward a pod's port as they do for runc: they enter the pod's
// network namespace on the host and dial localhost:PORT there (127.0.0.1,
// then ::1). A runvirt pod listens in its VM, not there. So the monitor of
// a CRI pod sandbox mirrors the guest: about every second it asks the agent
// which ports a connection to localhost reaches in the pod (OpPorts), keeps
// a listener on 127.0.0.1:PORT and [::1]:PORT in the pod's namespace on the
// host for each, closes those of ports that went away, and carries each
// connection it accepts to the guest, where the agent dials the port on
// localhost in the pod (OpDial).
//
// The guest's answer steers which loopback ports of the pod's own
// namespace the host listens on, nothing more: at most agent.MaxPorts of
// them, only on loopback (nothing outside the namespace reaches them), and
// only connections the host's side opens are carried, at most
// maxForwardConns at a time. The listeners close when the VM stops.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// portPollInterval is how often the guest's listeners are looked up:
	// a port opened in the pod is reachable by port-forward after as long.
	portPollInterval = time.Second
	// portCallTimeout bounds one OpPorts or OpDial answer.
	portCallTimeout = 5 * time.Second
	// maxForwardConns bounds the connections carried at once for one pod;
	// more are closed as soon as accepted.
	maxForwardConns = 256
	// forwardStall is how long a write to the guest may wait for it to
	// take data before the connection is given up: a guest that stops
	// reading must not hold the host's side for ever.
	forwardStall = 5 * time.Minute
)

// portForwarder mirrors the guest's localhost listeners (see above).
type portForwarder struct {
	log *slog.Logger
	// ports asks the guest which ports to mirror; its answer is checked.
	ports func(ctx context.Context) ([]uint16, error)
	// dial opens a stream to the port in the guest.
	dial func(ctx context.Context, port uint16) (net.Conn, error)
	// listen opens the mirror's listeners of a port on the host.
	listen func(port uint16) ([]net.Listener, error)

	// maxConns bounds the connections carried at once (maxForwardConns).
	maxConns int

	ctx   context.Context // ends when the forwarder stops
	slots chan struct{}   // one taken per connection carried
	wg    sync.WaitGroup  // accept loops and carried connections
	// Only run's goroutine touches these: ports whose listeners could not
	// be made (warned about once), and whether an answer with too many
	// ports was warned about.
	failed    map[uint16]bool
	warnedMax bool

	mu      sync.Mutex
	stopped bool                      // guarded by mu
	mirrors map[uint16][]net.Listener // guarded by mu
	conns   map[net.Conn]bool         // guarded by mu: both ends of each carried connection
}

// newPortForwarder returns the forwarder of sandbox id, whose agent is on
// sess, mirroring into the network namespace at netns.
func newPortForwarder(sess *yamux.Session, id, netns string, log *slog.Logger) *portForwarder {
	client := &agent.Client{
		Dial:    func(context.Context) (net.Conn, error) { return sess.OpenStream() },
		Timeout: portCallTimeout,
	}
	return &portForwarder{
		log:      log.With("component", "port-forward"),
		ports:    func(ctx context.Context) ([]uint16, error) { return client.Ports(ctx, id) },
		dial:     func(ctx context.Context, port uint16) (net.Conn, error) { return client.DialPort(ctx, id, port) },
		listen:   func(port uint16) ([]net.Listener, error) { return listenLoopback(netns, port) },
		maxConns: maxForwardConns,
		failed:   map[uint16]bool{},
		mirrors:  map[uint16][]net.Listener{},
		conns:    map[net.Conn]bool{},
	}
}

// run mirrors the guest's listeners until ctx ends, then closes every
// listener and connection and returns once all are gone.
func (f *portForwarder) run(ctx context.Context) {
	var cancel context.CancelFunc
	f.ctx, cancel = context.WithCancel(ctx)
	f.slots = make(chan struct{}, f.maxConns)
	defer func() {
		cancel()
		f.stop()
	}()
	t := time.NewTicker(portPollInterval)
	defer t.Stop()
	for f.poll() {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll asks the guest for its ports once and mirrors them. It returns false
// when the guest cannot answer this ever (an agent without OpPorts).
func (f *portForwarder) poll() bool {
	ctx, cancel := context.WithTimeout(f.ctx, portCallTimeout)
	ports, err := f.ports(ctx)
	cancel()
	var re *agent.RemoteError
	switch {
	case err == nil:
		ports, cut := mirrorablePorts(ports)
		if cut && !f.warnedMax {
			f.log.Warn("the guest lists more ports than are mirrored; the lowest are", "max", agent.MaxPorts)
			f.warnedMax = true
		}
		f.sync(ports)
	case errors.As(err, &re) && re.Kind == agent.ErrKindInvalid:
		f.log.Warn("the guest's agent cannot list its ports: port-forward to this pod is off (rebuild the guest image)", "err", err)
		return false
	case errors.As(err, &re):
		// The sandbox container is not created yet, or has stopped.
		f.sync(nil)
	default:
		// No answer (a busy or paused guest): keep what is mirrored.
		f.log.Debug("list the guest's ports", "err", err)
	}
	return true
}

// mirrorablePorts checks the guest's answer: no port 0, each port once,
// lowest first, at most agent.MaxPorts (cut says some were left out).
func mirrorablePorts(ports []uint16) (out []uint16, cut bool) {
	out = slices.DeleteFunc(slices.Clone(ports), func(p uint16) bool { return p == 0 })
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > agent.MaxPorts {
		return out[:agent.MaxPorts], true
	}
	return out, false
}

// sync makes the mirrors those of want: listeners of ports no longer
// listed close (their connections go on), listed ports get theirs.
func (f *portForwarder) sync(want []uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	for p, lns := range f.mirrors {
		if !slices.Contains(want, p) {
			closeAll(lns)
			delete(f.mirrors, p)
			f.log.Debug("port no longer mirrored", "port", p)
		}
	}
	for p := range f.failed {
		if !slices.Contains(want, p) {
			delete(f.failed, p)
		}
	}
	for _, p := range want {
		if _, ok := f.mirrors[p]; ok {
			continue
		}
		lns, err := f.listen(p)
		if err != nil {
			if !f.failed[p] {
				f.log.Warn("cannot mirror the guest's port; retrying", "port", p, "err", err)
				f.failed[p] = true
			}
			continue
		}
		delete(f.failed, p)
		f.mirrors[p] = lns
		for _, ln := range lns {
			f.wg.Add(1)
			go f.accept(p, ln)
		}
		f.log.Debug("port mirrored", "port", p)
	}
}

// accept carries every connection to ln to the guest's port until ln is
// closed.
func (f *portForwarder) accept(port uint16, ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: try again shortly.
			f.log.Warn("accept a port-forward connection", "port", port, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case f.slots <- struct{}{}:
		default:
			f.log.Warn("too many port-forward connections; closing a new one", "port", port, "max", f.maxConns)
			c.Close()
			continue
		}
		f.mu.Lock()
		stopped := f.stopped
		if !stopped {
			f.wg.Add(1)
			f.conns[c] = true
		}
		f.mu.Unlock()
		if stopped {
			c.Close()
			<-f.slots
			return
		}
		go func() {
			defer f.wg.Done()
			defer func() { <-f.slots }()
			defer f.untrack(c)
			f.forward(port, c)
		}()
	}
}

// track registers one end of a carried connection, to be closed if the
// forwarder stops; false once it has stopped.
func (f *portForwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *portForwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// forward dials the port in the guest and carries c to it.
func (f *portForwarder) forward(port uint16, c net.Conn) {
	ctx, cancel := context.WithTimeout(f.ctx, portCallTimeout)
	st, err := f.dial(ctx, port)
	cancel()
	if err != nil {
		// As runc's port-forward would see a refused connect.
		f.log.Debug("dial the guest's port", "port", port, "err", err)
		return
	}
	if !f.track(st) {
		st.Close()
		return
	}
	defer f.untrack(st)
	carry(c.(*net.TCPConn), st)
}

// stop closes every listener and connection and waits for their goroutines.
func (f *portForwarder) stop() {
	f.mu.Lock()
	f.stopped = true
	for p, lns := range f.mirrors {
		closeAll(lns)
		delete(f.mirrors, p)
	}
	for c := range f.conns {
		closeNow(c)
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// carry copies between the host's connection and the guest's stream until
// both directions have ended, passing each end on as a half-close (yamux's
// Close of a stream is one); an error either way ends both.
func carry(c *net.TCPConn, st net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			c.Close()
			closeNow(st)
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(c, st); err != nil {
			abort()
			return
		}
		c.CloseWrite()
	}()
	if _, err := io.Copy(stallWriter{st}, c); err != nil {
		abort()
	} else {
		st.Close()
	}
	<-done
	abort()
}

// closeNow closes c and ends the reads and writes waiting on it: a yamux
// stream's Close alone is a half-close, and its reads wait for the peer.
func closeNow(c net.Conn) {
	c.SetDeadline(time.Now())
	c.Close()
}

// stallWriter gives each write to the guest forwardStall to complete.
type stallWriter struct{ st net.Conn }

func (w stallWriter) Write(b []byte) (int, error) {
	w.st.SetWriteDeadline(time.Now().Add(forwardStall))
	return w.st.Write(b)
}

// listenLoopback opens port's listeners on 127.0.0.1 and ::1 in the
// network namespace at netns: each socket belongs to the namespace it was
// made in, whichever thread later uses it. One family is enough (a
// namespace may have IPv6 off).
func listenLoopback(netns string, port uint16) ([]net.Listener, error) {
	var lns []net.Listener
	err := nsexec.Do(netns, unix.CLONE_NEWNET, func() error {
		var errs []error
		for _, a := range []struct{ network, host string }{{"tcp4", "127.0.0.1"}, {"tcp6", "::1"}} {
			ln, err := net.Listen(a.network, net.JoinHostPort(a.host, strconv.Itoa(int(port))))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			lns = append(lns, ln)
		}
		if len(lns) == 0 {
			return errors.Join(errs...)
		}
		return nil
	})
	if err != nil {
		closeAll(lns)
		return nil, fmt.Errorf("listen on port %d in %s: %w", port, netns, err)
	}
	return lns, nil
}

// loopbackUp brings the loopback interface of the namespace at netns up,
// if it is down: the CRI runtimes dial localhost there.
func loopbackUp(netns string) error {
	return nsexec.Do(netns, unix.CLONE_NEWNET, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if lo.Attrs().Flags&net.FlagUp != 0 {
			return nil
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bring lo up: %w", err)
		}
		return nil
	})
}
