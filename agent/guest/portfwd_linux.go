package guest

// Port-forward, the guest's half. A CRI runtime forwards a pod's port by
// dialling localhost:PORT in the pod's network namespace on the host, where
// nothing of the VM listens. So the host asks which ports a connection to
// localhost would reach here (OpPorts), mirrors each as a listener of its
// own, and for every connection it accepts asks the agent to dial that port
// here (OpDial) and carry the bytes on the stream. Both are done in the
// network namespace of the container named in the request (the pod's
// sandbox container), which is where the pod's containers listen.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"golang.org/x/sys/unix"
)

// dialTimeout bounds one connect to a local port.
const dialTimeout = 5 * time.Second

// tcpListen is the st field of a listening socket in /proc/net/tcp{,6}.
const tcpListen = "0A"

// portForward answers OpPorts and OpDial; the func, for OpDial, carries
// the connection once the answer is written.
func (s *Server) portForward(req *agent.Request) (*agent.Response, func(net.Conn)) {
	if req.Op == agent.OpDial {
		return s.dial(req)
	}
	ports, err := s.ports(req.Container)
	r := errResp(err)
	r.Ports = ports
	return r, nil
}

// netPid returns the pid of container cid's running init, whose network
// namespace port-forward uses.
func (s *Server) netPid(cid string) (int, error) {
	p, err := s.lookup(cid, "")
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.pid == 0 || isClosed(p.exited) {
		return 0, badState("container %s is not running", cid)
	}
	return p.pid, nil
}

// ports answers OpPorts: the ports a connection to localhost reaches in
// cid's network namespace, at most agent.MaxPorts, lowest first.
func (s *Server) ports(cid string) ([]uint16, error) {
	pid, err := s.netPid(cid)
	if err != nil {
		return nil, err
	}
	var ports []uint16
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, name))
		if errors.Is(err, fs.ErrNotExist) && name == "tcp6" {
			continue // a kernel without IPv6
		}
		if err != nil {
			return nil, fmt.Errorf("list listening ports: %w", err)
		}
		ports = append(ports, localListeners(b)...)
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if len(ports) > agent.MaxPorts {
		ports = ports[:agent.MaxPorts]
	}
	return ports, nil
}

// localListeners parses a /proc/net/tcp or /proc/net/tcp6 table and returns
// the ports of its listening sockets that a connection to 127.0.0.1 or ::1
// reaches: those bound to a wildcard address or to that loopback address.
// A listener bound to another address (the pod's IP only) is left out, as
// runc's port-forward would not reach it either.
func localListeners(table []byte) []uint16 {
	var ports []uint16
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st ...
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 || string(f[3]) != tcpListen {
			continue
		}
		addr, port, ok := bytes.Cut(f[1], []byte(":"))
		if !ok {
			continue
		}
		ip := procIP(string(addr))
		p, err := strconv.ParseUint(string(port), 16, 16)
		if ip == nil || err != nil || p == 0 {
			continue
		}
		if ip.IsUnspecified() || ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback) {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

// procIP decodes an address of /proc/net/tcp{,6}: the address's 32-bit
// words in hex, each in the kernel's (little-endian) byte order.
func procIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != net.IPv4len && len(b) != net.IPv6len) {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// dial answers OpDial: it connects to the port on localhost in cid's
// network namespace, and the returned func carries the connection on the
// stream once the answer is written.
func (s *Server) dial(req *agent.Request) (*agent.Response, func(net.Conn)) {
	if req.Port == 0 {
		return errResp(&agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "dial: a port is required"}), nil
	}
	pid, err := s.netPid(req.Container)
	if err != nil {
		return errResp(err), nil
	}
	conn, err := dialLocal(pid, req.Port)
	if err != nil {
		return errResp(err), nil
	}
	return &agent.Response{}, func(st net.Conn) {
		spliceConn(conn.(*net.TCPConn), st)
	}
}

// dialLocal connects to port on 127.0.0.1, or failing that ::1, in the
// network namespace of pid, as the CRI runtimes try localhost for a runc
// pod. The socket is made on a thread that has joined the namespace, and
// belongs to it for good; where the namespace is the agent's own (a pod's
// containers share the guest's), on any thread.
func dialLocal(pid int, port uint16) (net.Conn, error) {
	var conn net.Conn
	err := nsexec.Do(fmt.Sprintf("/proc/%d/ns/net", pid), unix.CLONE_NEWNET, func() error {
		// Each dial creates its socket on this goroutine, so on this
		// thread; no fallback in parallel, which would run elsewhere.
		d := net.Dialer{Timeout: dialTimeout}
		var err4, err6 error
		if conn, err4 = d.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); err4 == nil {
			return nil
		}
		if conn, err6 = d.Dial("tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port)))); err6 == nil {
			return nil
		}
		return fmt.Errorf("dial localhost:%d: ipv4: %w; ipv6: %w", port, err4, err6)
	})
	return conn, err
}

// spliceConn copies between a local connection and the host's stream until
// both directions have ended, passing each end on as a half-close; an
// error either way (the host reset the stream, the peer the connection)
// ends both.
func spliceConn(conn *net.TCPConn, st net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			conn.Close()
			// A yamux Close is a half-close: end the reads too.
			st.SetDeadline(time.Now())
			st.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(conn, st); err != nil {
			abort()
			return
		}
		conn.CloseWrite()
	}()
	if _, err := io.Copy(st, conn); err != nil {
		abort()
	} else {
		st.Close() // yamux's Close is a half-close: the host reads EOF
	}
	<-done
	abort()
}
