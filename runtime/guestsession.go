package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// guestConn sits between the agent's connection and the monitor's yamux
// session and checks every yamux frame header the guest sends before yamux
// sees it. yamux's own configuration cannot refuse what costs the host
// without bound: it answers every ping from a new goroutine that waits up
// to the connection's write timeout (a guest that stops reading its port
// and sends pings grows the monitor by a goroutine per 12 bytes), it
// discards the payload of a data frame for a stream it does not know
// however long the header says it is (up to 4 GiB: everything after it is
// eaten, and the session is wedged), and it acts on GoAway. The agent
// never sends any of these, so each is a protocol error: Read fails, the
// session ends, and fault is called once (the monitor stops the VM).
//
// What is left costs the host no more than the guest sends: data frames
// for the host's own streams, within the windows the host granted them,
// window updates, and frames for streams the host has already closed,
// whose payload (at most one window each) yamux discards.
//
// It also reads the frame headers the host sends, to know which streams
// the host has opened. yamux reads from one goroutine and writes from
// another, each whole frames in order, so each direction is one stream of
// frames.
type guestConn struct {
	net.Conn
	maxData uint32      // the largest data frame the guest may send: one window
	fault   func(error) // called once, on the first violation

	in  frameScanner // guest to host; only Read touches it
	out frameScanner // host to guest; only Write touches it

	mu      sync.Mutex // guards the fields below
	opened  uint32     // the highest stream id the host has opened
	streams map[uint32]*streamSeen
	err     error // the violation, once there was one
}

// streamSeen is what the guest and the host have closed of one of the
// host's streams, and how many bytes the guest may still send on it.
type streamSeen struct {
	guestFIN, hostFIN bool
	// credit is the stream's receive window as the host has granted it:
	// one window at the start, plus every window update the host sent
	// (counted before it is written, so never less than the guest knows).
	credit uint64
}

// errGuestProtocol is the cause of every refused frame.
var errGuestProtocol = errors.New("guest protocol violation")

const (
	yamuxHeaderSize = 12

	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxTypePing         = 2
	yamuxTypeGoAway       = 3

	yamuxFlagSYN = 1
	yamuxFlagACK = 2
	yamuxFlagFIN = 4
	yamuxFlagRST = 8
)

// yamuxHeader is one decoded frame header.
type yamuxHeader struct {
	version, typ uint8
	flags        uint16
	stream       uint32
	length       uint32
}

func (h yamuxHeader) String() string {
	return fmt.Sprintf("version %d type %d flags %#x stream %d length %d", h.version, h.typ, h.flags, h.stream, h.length)
}

// frameScanner follows a byte stream of yamux frames, however it is cut,
// and decodes each header once it is complete.
type frameScanner struct {
	hdr     [yamuxHeaderSize]byte
	n       int    // header bytes collected
	payload uint32 // payload bytes of the current data frame still to come
}

// scan walks b and calls check on each header completed in it. It stops at
// the first error.
func (s *frameScanner) scan(b []byte, check func(yamuxHeader) error) error {
	for len(b) > 0 {
		if s.payload > 0 {
			skip := min(uint32(len(b)), s.payload)
			s.payload -= skip
			b = b[skip:]
			continue
		}
		k := copy(s.hdr[s.n:], b)
		s.n += k
		b = b[k:]
		if s.n < yamuxHeaderSize {
			return nil
		}
		s.n = 0
		h := yamuxHeader{
			version: s.hdr[0], typ: s.hdr[1],
			flags:  binary.BigEndian.Uint16(s.hdr[2:]),
			stream: binary.BigEndian.Uint32(s.hdr[4:]),
			length: binary.BigEndian.Uint32(s.hdr[8:]),
		}
		if err := check(h); err != nil {
			return err
		}
		if h.typ == yamuxTypeData {
			s.payload = h.length
		}
	}
	return nil
}

func newGuestConn(c net.Conn, maxData uint32, fault func(error)) *guestConn {
	return &guestConn{Conn: c, maxData: maxData, fault: fault, streams: map[uint32]*streamSeen{}}
}

// Read passes on what the guest sent once every frame header completed in
// it has been checked; a chunk with a bad header is withheld whole.
func (g *guestConn) Read(p []byte) (int, error) {
	if err := g.failed(); err != nil {
		return 0, err
	}
	n, err := g.Conn.Read(p)
	if cerr := g.in.scan(p[:n], g.checkGuest); cerr != nil {
		g.violation(cerr)
		return 0, g.failed()
	}
	return n, err
}

// Write notes the streams the host opens and closes before the guest can
// answer for them.
func (g *guestConn) Write(p []byte) (int, error) {
	g.out.scan(p, g.noteHost)
	return g.Conn.Write(p)
}

func (g *guestConn) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *guestConn) violation(err error) {
	g.mu.Lock()
	first := g.err == nil
	if first {
		g.err = err
	}
	g.mu.Unlock()
	if first && g.fault != nil {
		g.fault(err)
	}
}

// noteHost records the host's own frames: a SYN opens a stream, and a
// stream is forgotten once both sides have sent FIN or either RST.
func (g *guestConn) noteHost(h yamuxHeader) error {
	if h.typ != yamuxTypeData && h.typ != yamuxTypeWindowUpdate {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if h.flags&yamuxFlagSYN != 0 {
		g.opened = max(g.opened, h.stream)
		g.streams[h.stream] = &streamSeen{credit: uint64(g.maxData)}
	}
	s := g.streams[h.stream]
	if s == nil {
		return nil
	}
	if h.typ == yamuxTypeWindowUpdate {
		s.credit += uint64(h.length)
	}
	if h.flags&yamuxFlagFIN != 0 {
		s.hostFIN = true
	}
	if h.flags&yamuxFlagRST != 0 || (s.guestFIN && s.hostFIN) {
		delete(g.streams, h.stream)
	}
	return nil
}

// checkGuest refuses a guest frame that yamux would answer, or act on, at a
// cost the guest does not pay for.
func (g *guestConn) checkGuest(h yamuxHeader) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s (%s)", errGuestProtocol, why, h)
	}
	if h.version != 0 {
		return bad("unknown yamux version")
	}
	switch h.typ {
	case yamuxTypeData, yamuxTypeWindowUpdate:
	case yamuxTypePing:
		return bad("a ping (the host sends none, and answers none)")
	case yamuxTypeGoAway:
		return bad("a go-away (the agent never ends the session)")
	default:
		return bad("unknown frame type")
	}
	if h.typ == yamuxTypeData && h.length > g.maxData {
		return bad(fmt.Sprintf("a data frame larger than the window (%d bytes)", g.maxData))
	}
	if h.flags&yamuxFlagSYN != 0 {
		return bad("a stream opened by the guest (the agent never opens one)")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if h.stream == 0 || h.stream%2 == 0 || h.stream > g.opened {
		return bad("a frame for a stream the host never opened")
	}
	s := g.streams[h.stream]
	if s == nil {
		// Closed by the host already: a frame still in flight. yamux
		// discards its payload, which is at most one window.
		return nil
	}
	if h.typ == yamuxTypeData {
		if s.guestFIN && h.length > 0 {
			return bad("data after the guest's own FIN")
		}
		// yamux would end the session too, but only after queueing a
		// go-away, which waits for a guest that may not read.
		if uint64(h.length) > s.credit {
			return bad(fmt.Sprintf("data beyond the stream's window (%d bytes left)", s.credit))
		}
		s.credit -= uint64(h.length)
	}
	if h.flags&yamuxFlagFIN != 0 {
		s.guestFIN = true
	}
	if h.flags&yamuxFlagRST != 0 || (s.guestFIN && s.hostFIN) {
		delete(g.streams, h.stream)
	}
	return nil
}

// guestSession multiplexes the agent connection. Every byte on it comes
// from the guest, which is untrusted: guestConn refuses, before yamux sees
// them, the frames the agent never sends and yamux would pay for (pings,
// go-aways, streams the guest opens, frames for streams the host never
// opened, data frames longer than a window), and calls fault with the
// first. yamux's windows bound what each stream buffers (256 KiB), and the
// streams are the host's, opened one per client connection.
func guestSession(conn net.Conn, fault func(error), log *slog.Logger) (*yamux.Session, error) {
	ycfg := yamux.DefaultConfig()
	ycfg.LogOutput = io.Discard
	ycfg.EnableKeepAlive = false
	// A paused guest stops draining the port; don't kill the session for it.
	ycfg.ConnectionWriteTimeout = 5 * time.Minute
	ycfg.AcceptBacklog = 1
	gc := newGuestConn(conn, ycfg.MaxStreamWindowSize, func(err error) {
		log.Error("closing the session to the guest", "err", err)
		if fault != nil {
			fault(err)
		}
	})
	return yamux.Client(gc, ycfg)
}

// serveProxy maps each client connection onto a new yamux stream.
func serveProxy(ln net.Listener, sess *yamux.Session, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			st, err := sess.OpenStream()
			if err != nil {
				log.Warn("open stream to agent", "err", err)
				return
			}
			defer st.Close()
			splice(c.(*net.UnixConn), st)
		}()
	}
}

// splice copies both ways, passing each direction's end on as a half-close.
func splice(c *net.UnixConn, st *yamux.Stream) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(st, c)
		st.Close() // half-close: the agent sees EOF, the stream stays readable
	}()
	io.Copy(c, st)
	c.CloseWrite()
	wg.Wait()
}
