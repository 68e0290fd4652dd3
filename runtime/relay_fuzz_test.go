package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// The host side of the guest connection, as the monitor runs it: the yamux
// session over the agent's channel (a socket pair here, as virtio-serial
// is), the proxy that turns each client connection into a stream, and a
// client that dials the proxy. The other end of the pair is the guest's.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type hostSide struct {
	sess   *yamux.Session
	ln     net.Listener
	client *agent.Client
	served chan struct{} // closed when serveProxy returned
}

var proxyN atomic.Int64

// newHostSide starts the monitor's session and proxy on hostConn, with the
// proxy's socket in dir.
func newHostSide(t testing.TB, dir string, hostConn net.Conn) *hostSide {
	sess, err := guestSession(hostConn, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("p%d.sock", proxyN.Add(1)))
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostSide{sess: sess, ln: ln, served: make(chan struct{})}
	go func() {
		serveProxy(ln, sess, quiet)
		close(h.served)
	}()
	h.client = &agent.Client{Timeout: 2 * time.Second, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return h
}

// close ends the host side as the monitor does once QEMU is gone.
func (h *hostSide) close(t testing.TB) {
	h.ln.Close()
	h.sess.Close()
	select {
	case <-h.served:
	case <-time.After(5 * time.Second):
		t.Fatal("serveProxy did not return after its listener closed")
	}
}

func connPair(t testing.TB) (host, guest *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// noLeak fails if goroutines started since before stay around.
func noLeak(t testing.TB, before int) {
	for t0 := time.Now(); time.Since(t0) < 5*time.Second; time.Sleep(time.Millisecond) {
		if goruntime.NumGoroutine() <= before {
			return
		}
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines left, %d before:\n%s", goruntime.NumGoroutine(), before, buf[:goruntime.Stack(buf, true)])
}

// yamuxFrame encodes one yamux frame (version 0).
func yamuxFrame(typ uint8, flags uint16, stream, length uint32, data []byte) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], stream)
	binary.BigEndian.PutUint32(h[8:], length)
	return append(h, data...)
}

const (
	yData, yWindowUpdate, yPing, yGoAway = 0, 1, 2, 3
	fSYN, fACK, fFIN, fRST               = 1, 2, 4, 8
)

func agentFrame(v any) []byte {
	var b bytes.Buffer
	agent.WriteFrame(&b, v)
	return b.Bytes()
}

// A guest that opens streams of its own (the agent never does) loses its
// session at once, before it can make the host buffer its windows' worth.
func TestGuestOpenedStreamEndsSession(t *testing.T) {
	before := goruntime.NumGoroutine()
	host, guest := connPair(t)
	h := newHostSide(t, t.TempDir(), host)
	go io.Copy(io.Discard, guest)
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	var flood []byte
	for id := uint32(2); id < 2+2*64; id += 2 {
		flood = append(flood, yamuxFrame(yData, fSYN, id, uint32(len(chunk)), chunk)...)
	}
	guest.SetWriteDeadline(time.Now().Add(5 * time.Second))
	guest.Write(flood) // fails once the host hangs up
	select {
	case <-h.sess.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived a guest-opened stream")
	}
	// At most the one accepted and the one in the backlog of 1 were held
	// (yamux leaves them counted after Close).
	if n := h.sess.NumStreams(); n > 2 {
		t.Errorf("%d guest streams were held", n)
	}
	guest.Close()
	h.close(t)
	noLeak(t, before)
}

// FuzzGuestSession: whatever bytes the guest sends on the agent's channel
// (yamux frames or not), and whether or not it reads what the host sends,
// the monitor's session and proxy neither panic nor hang: a client call
// through the proxy returns within its timeout, the session ends when the
// guest's connection does, and nothing is left running.
func FuzzGuestSession(f *testing.F) {
	// A well-behaved answer to the host's first stream (id 1): ACK, the
	// agent's reply, FIN.
	ok := agentFrame(agent.Response{})
	f.Add(append(append(yamuxFrame(yWindowUpdate, fACK, 1, 0, nil),
		yamuxFrame(yData, 0, 1, uint32(len(ok)), ok)...),
		yamuxFrame(yWindowUpdate, fFIN, 1, 0, nil)...))
	f.Add(yamuxFrame(yData, fSYN, 2, 5, []byte("hello")))      // a guest-opened stream
	f.Add(yamuxFrame(yData, fACK, 1, 1<<30, nil))              // more than the window
	f.Add(yamuxFrame(yWindowUpdate, fACK, 1, 0xffffffff, nil)) // a window overflow
	f.Add(append(yamuxFrame(yPing, fSYN, 0, 7, nil), yamuxFrame(yGoAway, 0, 0, 1, nil)...))
	f.Add(bytes.Repeat(yamuxFrame(yPing, fSYN, 0, 7, nil), 1000)) // a ping flood
	f.Add(yamuxFrame(yData, 0, 5, 4, []byte("late")))             // a stream never opened
	f.Add(yamuxFrame(yWindowUpdate, fRST, 1, 0, nil))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}) // a bad version
	f.Add([]byte("not yamux at all"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, fromGuest []byte) {
		// A guest that drains the host's frames, and one that stops
		// reading its port (the host's writes then block).
		for _, drains := range []bool{true, false} {
			guestSessionOnce(t, dir, fromGuest, drains)
		}
	})
}

func guestSessionOnce(t *testing.T, dir string, fromGuest []byte, drains bool) {
	before := goruntime.NumGoroutine()
	host, guest := connPair(t)
	h := newHostSide(t, dir, host)
	// The guest: wait for the host's first frame, answer with the input,
	// then go away.
	guestDone := make(chan struct{})
	go func() {
		defer close(guestDone)
		guest.SetDeadline(time.Now().Add(3 * time.Second))
		hdr := make([]byte, 12)
		io.ReadFull(guest, hdr)
		if drains {
			go io.Copy(io.Discard, guest)
		}
		guest.Write(fromGuest)
		guest.CloseWrite()
	}()
	call := make(chan error, 1)
	go func() { call <- h.client.Ping(context.Background()) }()
	select {
	case <-call:
	case <-time.After(5 * time.Second):
		t.Fatalf("drains %v: a client call through the proxy did not return within its timeout", drains)
	}
	<-guestDone
	select {
	case <-h.sess.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatalf("drains %v: the session outlived the guest's connection", drains)
	}
	guest.Close()
	h.close(t)
	noLeak(t, before)
}

// fakeGuest serves the agent's side of stdio and wait on a yamux server
// over conn: stdout carries out, written in pieces whose sizes come from
// chunks; the wait stream answers with the frame whose payload is
// waitAnswer.
func fakeGuest(conn net.Conn, out, chunks, waitAnswer []byte) {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		return
	}
	defer sess.Close()
	for {
		st, err := sess.Accept()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			var req agent.Request
			if agent.ReadFrame(st, &req) != nil {
				return
			}
			switch {
			case req.Op == agent.OpWait:
				hdr := binary.BigEndian.AppendUint32(nil, uint32(len(waitAnswer)))
				st.Write(append(hdr, waitAnswer...))
			case req.Op == agent.OpStdio && (req.Stream == agent.StreamStdout || req.Stream == agent.StreamPTY):
				agent.WriteFrame(st, agent.Response{})
				rest := out
				for i := 0; len(rest) > 0; i++ {
					n := len(rest)
					if len(chunks) > 0 {
						n = min(n, int(chunks[i%len(chunks)])+1)
					}
					if _, err := st.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
			case req.Op == agent.OpStdio && req.Stream == agent.StreamStdin:
				agent.WriteFrame(st, agent.Response{})
				io.Copy(io.Discard, st) // until the host's EOF
			case req.Op == agent.OpStdio:
				agent.WriteFrame(st, agent.Response{}) // stderr: nothing
			default:
				agent.WriteFrame(st, agent.Response{Error: "unexpected " + req.Op, ErrorKind: agent.ErrKindInvalid})
			}
		}()
	}
}

// FuzzStdioRelay: the guest process's output, cut into frames any way the
// guest likes, reaches the stand-in's stdout byte for byte through the
// monitor's session, the proxy and the relay (with and without a
// terminal), and whatever the guest answers to wait, the relay returns
// within a bound: the status the guest sent, or an error.
func FuzzStdioRelay(f *testing.F) {
	f.Add([]byte("hello\n"), []byte{0, 3}, agentFrame(agent.Response{ExitStatus: 3})[4:], false)
	f.Add(bytes.Repeat([]byte("0123456789"), 1000), []byte{255, 17, 4095 & 255}, agentFrame(agent.Response{ExitStatus: 137})[4:], true)
	f.Add([]byte{}, []byte{}, []byte(`{"error":"gone","error_kind":"not-found"}`), false)
	f.Add([]byte("\x00\xff\r\n"), []byte{1}, []byte(`{"exit_status":-1}`), true)
	f.Add([]byte("x"), []byte{}, []byte(`{"exit_status":"3"}`), false)
	f.Add([]byte("x"), []byte{}, []byte(`nul`), false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, out, chunks, waitAnswer []byte, terminal bool) {
		before := goruntime.NumGoroutine()
		host, guest := connPair(t)
		go fakeGuest(guest, out, chunks, waitAnswer)
		h := newHostSide(t, dir, host)

		stdoutR, stdoutW, _ := os.Pipe()
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(stdoutR)
			stdoutR.Close()
			got <- b
		}()
		r := &Relay{Client: h.client, Container: "c", Terminal: terminal, Stdout: stdoutW, Log: quiet}
		if !terminal {
			r.Stderr = stdoutW
		}
		ctx := context.Background()
		if err := r.Attach(ctx); err != nil {
			t.Fatalf("attach: %v", err)
		}
		w, err := h.client.WaitStream(ctx, "c", "", true)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 1)
		go func() {
			st, err := r.Wait(ctx, w, nil)
			done <- result{st, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(outputDrainTimeout + 5*time.Second):
			t.Fatal("the relay did not return")
		}
		var want agent.Response
		wantErr := json.Unmarshal(waitAnswer, &want) != nil || want.Error != ""
		switch {
		case wantErr && res.err == nil:
			t.Errorf("wait answer %q gave status %d, want an error", waitAnswer, res.status)
		case !wantErr && (res.err != nil || res.status != want.ExitStatus):
			t.Errorf("wait answer %q gave %d, %v; want %d", waitAnswer, res.status, res.err, want.ExitStatus)
		}
		if res.err == nil {
			// The relay returned after the output ended: all of it.
			<-r.outDone
			stdoutW.Close()
			if b := <-got; !bytes.Equal(b, out) {
				t.Errorf("output corrupted: got %d bytes, sent %d", len(b), len(out))
			}
		} else {
			stdoutW.Close()
			<-got
		}
		h.close(t)
		guest.Close()
		noLeak(t, before)
	})
}
