package guest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tables as the kernel writes them: only listeners that a connection to
// 127.0.0.1 or ::1 reaches count.
func TestLocalListeners(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0200000A:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0100007F:15B3 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   4: 0200007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   5: 0100007F:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   6: garbage
   7: 0100007F1F90 00000000:0000 0A
   8: 0100007:1F90 00000000:0000 0A
`
	if got, want := localListeners([]byte(tcp)), []uint16{8080, 9000}; !slices.Equal(got, want) {
		t.Errorf("tcp: %v, want %v", got, want)
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 000080FE00000000FF005452563412FE:0FA0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   4: 00000000000000000000000001000000:1388 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
`
	if got, want := localListeners([]byte(tcp6)), []uint16{80, 443, 3000}; !slices.Equal(got, want) {
		t.Errorf("tcp6: %v, want %v", got, want)
	}
}

// agentClient serves s over a yamux session, as Serve does, but without
// the reaper loop (see reapInto), and returns a host's client of it.
func agentClient(t *testing.T, s *Server) *agent.Client {
	t.Helper()
	guestEnd, hostEnd := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	srv, err := yamux.Server(guestEnd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := yamux.Client(hostEnd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	go func() {
		for {
			st, err := srv.Accept()
			if err != nil {
				return
			}
			go s.handle(st)
		}
	}()
	return &agent.Client{Dial: func(context.Context) (net.Conn, error) { return cli.OpenStream() }, Timeout: 10 * time.Second}
}

// fakeContainer registers a running container whose init is pid, for
// the requests that only read its namespaces.
func fakeContainer(s *Server, id string, pid int) {
	p := &process{spec: &specs.Process{}, pid: pid, started: true, execed: true,
		spawned: make(chan struct{}), exited: make(chan struct{}), attached: map[string]bool{}}
	close(p.spawned)
	s.mu.Lock()
	s.containers[id] = &container{id: id, procs: map[string]*process{"": p}}
	s.mu.Unlock()
}

// echoOnce accepts one connection, reads it to its end (the host's
// half-close), answers "got:" and what it read, and closes.
func echoOnce(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("got:"), b...))
	}()
}

// roundTrip sends msg through a dialled stream, half-closes it and returns
// everything that came back.
func roundTrip(t *testing.T, c *agent.Client, id string, port uint16, msg string) string {
	t.Helper()
	st, err := c.DialPort(context.Background(), id, port)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(st, msg); err != nil {
		t.Fatal(err)
	}
	st.Close() // yamux: a half-close
	b, err := io.ReadAll(st)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	return string(b)
}

// OpPorts lists a listener of the container's namespace and OpDial reaches
// it, each side's end passed on; a closed port, an unknown container and a
// missing port are errors.
func TestServerPortsAndDial(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	c := agentClient(t, s)
	// This thread's namespace, not the process's: /proc/PID/net is the
	// main thread's, which a test before may have left in another.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fakeContainer(s, "sb", unix.Gettid())
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ports, err := c.Ports(context.Background(), "sb")
	if err != nil || !slices.Contains(ports, port) || len(ports) > agent.MaxPorts || !slices.IsSorted(ports) {
		t.Fatalf("ports: %v %v; want %d among them, sorted, at most %d", ports, err, port, agent.MaxPorts)
	}
	echoOnce(t, ln)
	if got := roundTrip(t, c, "sb", port, "hello"); got != "got:hello" {
		t.Errorf("through the stream: %q", got)
	}

	// A listener on ::1 only is listed and reached, after 127.0.0.1 fails.
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback here, not tried: %v", err)
	} else {
		defer ln6.Close()
		port6 := uint16(ln6.Addr().(*net.TCPAddr).Port)
		if ports, err := c.Ports(context.Background(), "sb"); err != nil || !slices.Contains(ports, port6) {
			t.Errorf("ports: %v %v; want %d (on ::1) among them", ports, err, port6)
		}
		echoOnce(t, ln6)
		if got := roundTrip(t, c, "sb", port6, "six"); got != "got:six" {
			t.Errorf("through the stream to ::1: %q", got)
		}
	}

	ln.Close()
	if _, err := c.DialPort(context.Background(), "sb", port); err == nil {
		t.Error("dial of a closed port succeeded")
	}
	var re *agent.RemoteError
	if _, err := c.Ports(context.Background(), "nope"); !errors.As(err, &re) || re.Kind != agent.ErrKindNotFound {
		t.Errorf("ports of an unknown container: %v", err)
	}
	if _, err := c.DialPort(context.Background(), "sb", 0); !errors.As(err, &re) || re.Kind != agent.ErrKindInvalid {
		t.Errorf("dial of port 0: %v", err)
	}
}

// A container in a network namespace of its own: its listeners are
// listed, and dialled, there, not in the agent's.
func TestServerDialOtherNetNS(t *testing.T) {
	testutil.RequiresRoot(t, "make network namespaces")
	type ns struct {
		tid  int
		port uint16
		err  error
	}
	ready, stop := make(chan ns, 1), make(chan struct{})
	defer close(stop)
	go func() {
		// Never unlocked: the thread ends in the test's namespace.
		runtime.LockOSThread()
		err := func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(lo)
		}()
		if err != nil {
			ready <- ns{err: err}
			return
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			ready <- ns{err: err}
			return
		}
		defer ln.Close()
		echoOnce(t, ln)
		ready <- ns{tid: unix.Gettid(), port: uint16(ln.Addr().(*net.TCPAddr).Port)}
		<-stop
	}()
	n := <-ready
	if n.err != nil {
		t.Fatalf("make a network namespace: %v", n.err)
	}
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	c := agentClient(t, s)
	// /proc/TID/ns/net and /proc/TID/net are the thread's.
	fakeContainer(s, "other", n.tid)
	ports, err := c.Ports(context.Background(), "other")
	if err != nil || !slices.Equal(ports, []uint16{n.port}) {
		t.Fatalf("ports in the other namespace: %v %v; want [%d]", ports, err, n.port)
	}
	if got := roundTrip(t, c, "other", n.port, "there"); got != "got:there" {
		t.Errorf("through the stream: %q", got)
	}
}
