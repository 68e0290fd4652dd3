package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/sys/unix"
)

// portGuest answers OpPorts with what the test sets and OpDial by
// connecting to the test's servers, over the monitor's own yamux session
// (guestSession, with its frame check).
type portGuest struct {
	mu       sync.Mutex
	ports    []uint16          // guarded by mu
	portsErr *agent.Response   // guarded by mu: the answer instead, if set
	targets  map[uint16]string // guarded by mu: where a dial of a port goes
	dials    int               // guarded by mu
}

func (g *portGuest) set(ports []uint16, targets map[uint16]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ports, g.targets = ports, targets
}

// start serves the guest's end and returns the host's session.
func (g *portGuest) start(t *testing.T) *yamux.Session {
	t.Helper()
	guestEnd, hostEnd := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	srv, err := yamux.Server(guestEnd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := guestSession(hostEnd, func(err error) { t.Errorf("guest protocol: %v", err) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close(); srv.Close() })
	go func() {
		for {
			st, err := srv.Accept()
			if err != nil {
				return
			}
			go g.handle(st)
		}
	}()
	return sess
}

func (g *portGuest) handle(st net.Conn) {
	defer st.Close()
	var req agent.Request
	if agent.ReadFrame(st, &req) != nil || req.Container != "sb" {
		return
	}
	g.mu.Lock()
	ports, perr, target := g.ports, g.portsErr, g.targets[req.Port]
	if req.Op == agent.OpDial {
		g.dials++
	}
	g.mu.Unlock()
	switch req.Op {
	case agent.OpPorts:
		if perr != nil {
			agent.WriteFrame(st, perr)
			return
		}
		agent.WriteFrame(st, &agent.Response{Ports: ports})
	case agent.OpDial:
		c, err := net.Dial("tcp", target)
		if err != nil {
			agent.WriteFrame(st, &agent.Response{Error: err.Error()})
			return
		}
		agent.WriteFrame(st, &agent.Response{})
		carry(c.(*net.TCPConn), st)
	}
}

// mirrorsOf starts a forwarder for the fake guest whose listeners are on
// ephemeral ports of 127.0.0.1 (the test's own namespace): the returned
// func gives where a guest port is mirrored, "" if it is not.
func mirrorsOf(t *testing.T, g *portGuest, maxConns int) (where func(uint16) string, stop func()) {
	t.Helper()
	f := newPortForwarder(g.start(t), "sb", "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.maxConns = maxConns
	var mu sync.Mutex
	at := map[uint16]net.Listener{}
	f.listen = func(port uint16) ([]net.Listener, error) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		mu.Lock()
		at[port] = ln
		mu.Unlock()
		return []net.Listener{ln}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the forwarder did not stop")
		}
	}
	t.Cleanup(stop)
	where = func(port uint16) string {
		// Not under mu while f.mu is taken: sync holds f.mu when it
		// calls listen, which takes mu.
		mu.Lock()
		ln := at[port]
		mu.Unlock()
		if ln == nil {
			return ""
		}
		// A closed listener: the port is not mirrored any more.
		f.mu.Lock()
		defer f.mu.Unlock()
		if lns := f.mirrors[port]; len(lns) == 0 || lns[0] != ln {
			return ""
		}
		return ln.Addr().String()
	}
	return where, stop
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// echoServer answers each connection, once it has read all of it, with
// "got:" and what it read.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("got:"), b...))
			}()
		}
	}()
	return ln.Addr().String()
}

// exchange sends msg to addr, half-closes and returns the answer.
func exchange(t *testing.T, addr, msg string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// A listed port is mirrored and carries bytes both ways with each side's
// end passed on; an unlisted one is closed; stopping leaves no listener.
func TestPortForwardMirrors(t *testing.T) {
	g := &portGuest{}
	echo := echoServer(t)
	g.set([]uint16{8080}, map[uint16]string{8080: echo})
	where, stop := mirrorsOf(t, g, maxForwardConns)
	eventually(t, "port 8080 mirrored", func() bool { return where(8080) != "" })
	addr := where(8080)
	big := string(make([]byte, 1<<20)) // more than a yamux window
	if got, err := exchange(t, addr, "hello"+big); err != nil || got != "got:hello"+big {
		t.Fatalf("through the mirror: %d bytes, %v; want %d", len(got), err, len("got:hello"+big))
	}

	g.set([]uint16{9090}, map[uint16]string{9090: echo})
	eventually(t, "8080 closed, 9090 mirrored", func() bool { return where(8080) == "" && where(9090) != "" })
	if _, err := net.Dial("tcp4", addr); err == nil {
		t.Error("the mirror of a port no longer listed still accepts")
	}
	addr = where(9090)
	stop()
	if _, err := net.Dial("tcp4", addr); err == nil {
		t.Error("a mirror accepts after the forwarder stopped")
	}
}

// The guest's answer is checked: port 0 and duplicates are dropped, and
// of too many ports only the agent.MaxPorts lowest are mirrored. A guest
// that no longer answers with ports (the sandbox stopped) has none.
func TestPortForwardHostileAnswer(t *testing.T) {
	g := &portGuest{}
	var ports []uint16
	for p := 1000; p > 0; p-- {
		ports = append(ports, uint16(p), 0, uint16(p))
	}
	g.set(ports, nil)
	where, _ := mirrorsOf(t, g, maxForwardConns)
	count := func() (n int, all bool) {
		all = true
		for p := uint16(1); p <= 1000; p++ {
			if where(p) != "" {
				n++
			} else if p <= agent.MaxPorts {
				all = false
			}
		}
		return n, all
	}
	eventually(t, fmt.Sprintf("ports 1-%d mirrored", agent.MaxPorts), func() bool { _, all := count(); return all })
	if n, _ := count(); n != agent.MaxPorts {
		t.Errorf("%d ports mirrored, want %d", n, agent.MaxPorts)
	}
	g.mu.Lock()
	g.portsErr = &agent.Response{Error: "container sb is not running", ErrorKind: agent.ErrKindState}
	g.mu.Unlock()
	eventually(t, "no port mirrored", func() bool { n, _ := count(); return n == 0 })
}

// At most maxConns connections are carried at once; the next is closed at
// once, and a connection still carried when the forwarder stops is closed.
func TestPortForwardConnLimit(t *testing.T) {
	g := &portGuest{}
	hold, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open until the test ends
		}
	}()
	g.set([]uint16{7000}, map[uint16]string{7000: hold.Addr().String()})
	where, stop := mirrorsOf(t, g, 2)
	eventually(t, "port 7000 mirrored", func() bool { return where(7000) != "" })
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp4", where(7000))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	eventually(t, "two dials in the guest", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.dials == 2 })
	extra, err := net.Dial("tcp4", where(7000))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the connection over the limit: %v, want EOF", err)
	}
	stop()
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("a carried connection after stop: %v, want EOF", err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dials != 2 {
		t.Errorf("%d dials in the guest, want 2", g.dials)
	}
}

// An agent that does not know OpPorts turns port-forward off: the
// forwarder ends by itself.
func TestPortForwardOldAgent(t *testing.T) {
	g := &portGuest{portsErr: &agent.Response{Error: `unknown operation "ports"`, ErrorKind: agent.ErrKindInvalid}}
	f := newPortForwarder(g.start(t), "sb", "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		f.run(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder kept polling an agent without OpPorts")
	}
}

func TestMirrorablePorts(t *testing.T) {
	got, cut := mirrorablePorts([]uint16{443, 0, 80, 443, 8080})
	if !slices.Equal(got, []uint16{80, 443, 8080}) || cut {
		t.Errorf("got %v, cut %v", got, cut)
	}
}

// Only a CRI pod sandbox with a network namespace of its own gets its
// listeners mirrored, and into that namespace.
func TestPortForwardNetNS(t *testing.T) {
	netns := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}}}}
	hostNet := &specs.Spec{Linux: &specs.Linux{}}
	for _, c := range []struct {
		name string
		ann  map[string]string
		spec *specs.Spec
		want string
	}{
		{"containerd sandbox", map[string]string{AnnotationCRIType: "sandbox"}, netns, "/var/run/netns/cni-1"},
		{"cri-o sandbox", map[string]string{AnnotationCRIOType: "sandbox"}, netns, "/var/run/netns/cni-1"},
		{"host network pod", map[string]string{AnnotationCRIType: "sandbox"}, hostNet, ""},
		{"pod container", map[string]string{AnnotationCRIType: "container", AnnotationCRISandbox: "sb"}, netns, ""},
		{"no pod", nil, netns, ""},
	} {
		d := Dir{Root: t.TempDir(), ID: "sb"}
		if err := os.MkdirAll(d.Path(), 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(c.spec)
		if err := os.WriteFile(d.Spec(), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st := &State{ID: "sb", Sandbox: "sb", Annotations: c.ann}
		if got := portForwardNetNS(d, st, slog.New(slog.NewTextHandler(io.Discard, nil))); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The mirror's listeners are on loopback in the namespace given, whose lo
// loopbackUp brings up, and nowhere in the caller's.
func TestListenLoopbackInNetNS(t *testing.T) {
	testutil.RequiresRoot(t, "make network namespaces")
	tid, stop := make(chan int, 1), make(chan struct{})
	defer close(stop)
	go func() {
		// Never unlocked: the thread ends in the test's namespace.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			tid <- 0
			return
		}
		tid <- unix.Gettid()
		<-stop
	}()
	id := <-tid
	if id == 0 {
		return
	}
	netns := fmt.Sprintf("/proc/%d/ns/net", id)
	if err := loopbackUp(netns); err != nil {
		t.Fatal(err)
	}
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	lns, err := listenLoopback(netns, port)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(lns)
	var addrs []string
	for _, ln := range lns {
		addrs = append(addrs, ln.Addr().String())
	}
	if len(addrs) == 0 || addrs[0] != fmt.Sprintf("127.0.0.1:%d", port) || len(addrs) > 2 || (len(addrs) == 2 && addrs[1] != fmt.Sprintf("[::1]:%d", port)) {
		t.Errorf("listeners %v, want 127.0.0.1 and ::1 on %d", addrs, port)
	}
	// Not in the test's own namespace: the port is free here.
	if c, err := net.Dial("tcp4", free.Addr().String()); err == nil {
		c.Close()
		t.Error("the mirror listens in the caller's namespace")
	}
	// In its namespace, it accepts.
	err = nsexec.Do(netns, unix.CLONE_NEWNET, func() error {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("dial the mirror in its namespace: %v", err)
	}
}
