package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// A guest that stops reading its port and floods the host with pings
// (4 MiB of them) loses its session at once; the monitor starts no
// goroutine per ping and its heap does not grow with the flood. Before the
// frame check, yamux answered each ping from a goroutine that waited up to
// the 5-minute write timeout.
func TestGuestPingFloodEndsSession(t *testing.T) {
	before := goruntime.NumGoroutine()
	var heapBefore goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&heapBefore)

	host, guest := connPair(t)
	var faults atomic.Int32
	var faultErr atomic.Value
	sess, err := guestSession(host, func(err error) { faults.Add(1); faultErr.Store(err) }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	flood := make([]byte, 0, 4<<20)
	for id := uint32(0); len(flood)+12 <= cap(flood); id++ {
		flood = append(flood, yamuxFrame(yPing, fSYN, 0, id, nil)...)
	}
	// The guest never reads; it writes until the host hangs up.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		guest.SetWriteDeadline(time.Now().Add(10 * time.Second))
		guest.Write(flood)
	}()
	maxG := 0
	deadline := time.After(5 * time.Second)
wait:
	for {
		maxG = max(maxG, goruntime.NumGoroutine())
		select {
		case <-sess.CloseChan():
			break wait
		case <-deadline:
			t.Fatalf("the session outlived a ping flood (%d goroutines, %d before)", goruntime.NumGoroutine(), before)
		case <-time.After(time.Millisecond):
		}
	}
	if maxG > before+16 {
		t.Errorf("%d goroutines during the flood, %d before", maxG, before)
	}
	if n := faults.Load(); n != 1 {
		t.Errorf("fault called %d times, want once", n)
	}
	if err, _ := faultErr.Load().(error); !errors.Is(err, errGuestProtocol) {
		t.Errorf("fault: %v, want a protocol violation", err)
	}
	var heapAfter goruntime.MemStats
	goruntime.ReadMemStats(&heapAfter)
	if grew := int64(heapAfter.HeapInuse) - int64(heapBefore.HeapInuse); grew > 16<<20 {
		t.Errorf("heap grew by %d MiB during the flood", grew>>20)
	}
	guest.Close()
	<-wrote
	sess.Close()
	noLeak(t, before)
}

// Each frame the agent never sends ends the session, and a well-formed
// exchange on the host's own stream does not.
func TestGuestFrameCheck(t *testing.T) {
	okReply := agentFrame(struct{}{})
	for _, tc := range []struct {
		name  string
		frame []byte
		bad   bool
	}{
		{"ping", yamuxFrame(yPing, fSYN, 0, 1, nil), true},
		{"ping reply", yamuxFrame(yPing, fACK, 0, 1, nil), true},
		{"go-away", yamuxFrame(yGoAway, 0, 0, 0, nil), true},
		{"unknown type", yamuxFrame(7, 0, 1, 0, nil), true},
		{"bad version", append([]byte{1}, yamuxFrame(yData, 0, 1, 0, nil)[1:]...), true},
		{"guest-opened stream", yamuxFrame(yWindowUpdate, fSYN, 2, 0, nil), true},
		{"stream never opened", yamuxFrame(yData, 0, 99, 1, []byte("x")), true},
		{"stream zero", yamuxFrame(yData, 0, 0, 1, []byte("x")), true},
		{"longer than the window", yamuxFrame(yData, 0, 1, 256<<10+1, nil), true},
		{"beyond the window", append(yamuxFrame(yData, 0, 1, 200<<10, make([]byte, 200<<10)), yamuxFrame(yData, 0, 1, 100<<10, make([]byte, 100<<10))...), true},
		{"the agent's answer", append(yamuxFrame(yWindowUpdate, fACK, 1, 0, nil), yamuxFrame(yData, fFIN, 1, uint32(len(okReply)), okReply)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := connPair(t)
			defer guest.Close()
			var faults atomic.Int32
			sess, err := guestSession(host, func(error) { faults.Add(1) }, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			go io.Copy(io.Discard, guest)
			st, err := sess.OpenStream() // the host's stream 1
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			guest.Write(tc.frame)
			select {
			case <-sess.CloseChan():
				if !tc.bad {
					t.Fatal("a well-formed frame ended the session")
				}
				if faults.Load() != 1 {
					t.Errorf("fault called %d times", faults.Load())
				}
			case <-time.After(500 * time.Millisecond):
				if tc.bad {
					t.Fatal("the session outlived the frame")
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				st.SetReadDeadline(time.Now().Add(time.Second))
				got, _ := io.ReadAll(st)
				if !bytes.Equal(got, okReply) || ctx.Err() != nil {
					t.Errorf("read %q on the stream, want %q", got, okReply)
				}
			}
		})
	}
}

// The scanner finds every header however the byte stream is cut.
func TestFrameScannerSplits(t *testing.T) {
	var stream []byte
	for i := uint32(1); i <= 5; i++ {
		stream = append(stream, yamuxFrame(yData, 0, 2*i-1, i, bytes.Repeat([]byte{byte(i)}, int(i)))...)
	}
	for cut := 1; cut <= len(stream); cut++ {
		var s frameScanner
		var ids []uint32
		for b := stream; len(b) > 0; {
			n := min(cut, len(b))
			s.scan(b[:n], func(h yamuxHeader) error { ids = append(ids, h.stream); return nil })
			b = b[n:]
		}
		if len(ids) != 5 || ids[4] != 9 {
			t.Fatalf("cut %d: headers for streams %v", cut, ids)
		}
	}
}

// A real yamux peer that sends megabytes on the host's streams, within the
// windows the host grants as it reads, never trips the frame check.
func TestGuestFrameCheckBulk(t *testing.T) {
	host, guest := connPair(t)
	var faults atomic.Int32
	sess, err := guestSession(host, func(error) { faults.Add(1) }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	peer, err := yamux.Server(guest, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const size = 4 << 20
	go func() {
		for {
			st, err := peer.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				st.Write(bytes.Repeat([]byte{'y'}, size))
			}()
		}
	}()
	for i := 0; i < 3; i++ {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("go"))
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, st)
		st.Close()
		if n != size || err != nil {
			t.Fatalf("stream %d: read %d bytes of %d: %v", i, n, size, err)
		}
	}
	if faults.Load() != 0 {
		t.Error("a well-behaved peer was refused")
	}
}
