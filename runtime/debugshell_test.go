package runtime

import (
	"os"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// SIGWINCH resizes the guest's pty to our terminal's new size: the first
// of the files that is a terminal, each time, until the shell ends.
func TestRelayWinch(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("skipping, no pty here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	pipeR, pipeW, _ := os.Pipe()
	defer pipeR.Close()
	defer pipeW.Close()

	type size struct{ w, h uint16 }
	got := make(chan size, 4)
	winch := make(chan os.Signal, 1)
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		// stdout is a pipe (| tee), stdin the terminal.
		relayWinch([]*os.File{pipeW, tty}, winch, done, func(w, h uint16) error { got <- size{w, h}; return nil }, quiet)
		close(ended)
	}()
	for _, want := range []size{{132, 50}, {80, 24}} {
		if err := pty.Setsize(ptmx, &pty.Winsize{Cols: want.w, Rows: want.h}); err != nil {
			t.Fatal(err)
		}
		winch <- unix.SIGWINCH
		select {
		case s := <-got:
			if s != want {
				t.Errorf("resized to %v, want %v", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no resize after SIGWINCH to %v", want)
		}
	}
	close(done)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("relayWinch did not return once the shell ended")
	}

	// No terminal among the files: nothing to resize to.
	done = make(chan struct{})
	defer close(done)
	go relayWinch([]*os.File{pipeW}, winch, done, func(w, h uint16) error { got <- size{w, h}; return nil }, quiet)
	winch <- unix.SIGWINCH
	winch <- unix.SIGWINCH
	select {
	case s := <-got:
		t.Errorf("resized to %v without a terminal", s)
	case <-time.After(100 * time.Millisecond):
	}
}
