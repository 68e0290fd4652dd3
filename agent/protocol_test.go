package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Request{Op: OpSignal, Container: "c", Exec: "e", Signal: 9, All: true}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := ReadFrame(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if out.Op != in.Op || out.Container != in.Container || out.Exec != in.Exec || out.Signal != 9 || !out.All {
		t.Fatalf("got %+v", out)
	}
}

func TestReadFrameRefusesOversize(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrameSize+1)
	// A hostile peer claims a huge frame: no allocation, a clear error.
	err := ReadFrame(bytes.NewReader(hdr[:]), &Response{})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
}

func TestWriteFrameRefusesOversize(t *testing.T) {
	big := Request{Op: strings.Repeat("x", MaxFrameSize)}
	if err := WriteFrame(io.Discard, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	var buf bytes.Buffer
	WriteFrame(&buf, Hello{Version: 1})
	b := buf.Bytes()[:buf.Len()-2]
	if err := ReadFrame(bytes.NewReader(b), &Hello{}); err == nil {
		t.Fatal("a truncated frame must be an error")
	}
	if err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 2, '{', 'x'}), &Hello{}); err == nil {
		t.Fatal("malformed JSON must be an error")
	}
}

// A guest that accepts the stream but never answers must not hang the host.
func TestClientTimesOutOnSilentAgent(t *testing.T) {
	c := &Client{
		Timeout: 100 * time.Millisecond,
		Dial: func(ctx context.Context) (net.Conn, error) {
			host, guest := net.Pipe()
			go io.Copy(io.Discard, guest) // read the request, answer nothing
			return host, nil
		},
	}
	start := time.Now()
	err := c.Ping(context.Background())
	if err == nil {
		t.Fatal("want a timeout error")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestClientReportsRemoteError(t *testing.T) {
	c := &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		go func() {
			var req Request
			ReadFrame(guest, &req)
			WriteFrame(guest, Response{Error: `exec: "nope": executable file not found in $PATH`, ErrorKind: ErrKindExecutable})
			guest.Close()
		}()
		return host, nil
	}}
	_, err := c.Start(context.Background(), "c", "")
	var re *RemoteError
	if !errors.As(err, &re) || re.Kind != ErrKindExecutable || !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("got %v", err)
	}
}

// FuzzReadFrame: whatever the guest sends, reading a frame never panics,
// never returns a body over MaxFrameSize, and a frame it accepts re-encodes.
func FuzzReadFrame(f *testing.F) {
	var ok bytes.Buffer
	WriteFrame(&ok, Response{Pid: 7, Status: "running", Pids: []int{1, 2}})
	f.Add(ok.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 3, '{', '}', '}'})
	f.Add([]byte{0, 0, 0, 4, 'n', 'u', 'l', 'l'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp Response
		if err := ReadFrame(bytes.NewReader(b), &resp); err != nil {
			return
		}
		if len(b) < 4 || int(binary.BigEndian.Uint32(b)) > MaxFrameSize {
			t.Fatalf("accepted a frame whose header claims more than the limit: %x", b[:4])
		}
		if err := WriteFrame(io.Discard, resp); err != nil {
			t.Fatalf("an accepted frame does not re-encode: %v", err)
		}
	})
}

// FuzzClientResponses: whatever the guest answers, every client call
// returns (an error or a result) without panicking or hanging.
func FuzzClientResponses(f *testing.F) {
	var ok bytes.Buffer
	WriteFrame(&ok, Response{Pid: 7, Status: "running", Pids: []int{1, 2}, ExitStatus: 3})
	f.Add(ok.Bytes())
	var bad bytes.Buffer
	WriteFrame(&bad, Response{Error: "boom", ErrorKind: ErrKindNotFound})
	f.Add(bad.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0, 0, 0, 9, '{', '"', 'p', 'i', 'd', 's', '"', ':', '1'})
	var ports bytes.Buffer
	WriteFrame(&ports, Response{Ports: []uint16{80, 443}})
	f.Add(ports.Bytes())
	f.Fuzz(func(t *testing.T, answer []byte) {
		c := &Client{Timeout: time.Second, Dial: func(context.Context) (net.Conn, error) {
			ours, theirs := net.Pipe()
			go func() {
				defer theirs.Close()
				var req Request
				if ReadFrame(theirs, &req) != nil {
					return
				}
				theirs.Write(answer)
			}()
			return ours, nil
		}}
		ctx := context.Background()
		c.State(ctx, "c")
		c.Ps(ctx, "c")
		c.Stats(ctx, "c")
		c.Start(ctx, "c", "")
		c.Ports(ctx, "c")
		if st, err := c.DialPort(ctx, "c", 80); err == nil {
			st.Close()
		}
		if w, err := c.WaitStream(ctx, "c", "", false); err == nil {
			done := make(chan struct{})
			go func() { w.Result(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				w.Close()
				t.Fatal("a wait result never returned on a closed stream")
			}
		}
	})
}

// A call the agent never answers fails within the timeout and says where
// to look; the agent's own errors carry no such hint.
func TestClientHintOnTransportErrors(t *testing.T) {
	silent := &Client{Timeout: 100 * time.Millisecond, Hint: "guest console: /x/console.log", Dial: func(context.Context) (net.Conn, error) {
		ours, theirs := net.Pipe()
		go func() { io.Copy(io.Discard, theirs) }()
		return ours, nil
	}}
	err := silent.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer") || !strings.HasSuffix(err.Error(), "; guest console: /x/console.log") {
		t.Errorf("silent agent: %v", err)
	}
	answering := &Client{Hint: "guest console: /x/console.log", Dial: func(context.Context) (net.Conn, error) {
		ours, theirs := net.Pipe()
		go func() {
			var req Request
			ReadFrame(theirs, &req)
			WriteFrame(theirs, Response{Error: "container c does not exist", ErrorKind: ErrKindNotFound})
		}()
		return ours, nil
	}}
	if err := answering.Ping(context.Background()); err == nil || strings.Contains(err.Error(), "console") {
		t.Errorf("agent error: %v", err)
	}
}
