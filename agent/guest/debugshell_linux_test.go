package guest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/creack/pty"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// OpResize with Container DebugDir resizes the running debug shell of that
// id, and only a running one.
func TestResizeDebugShell(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("skipping, no pty here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := s.addDebugShell("sh1", ptmx); err != nil {
		t.Fatal(err)
	}
	if err := s.addDebugShell("sh1", ptmx); err == nil {
		t.Error("a second shell took a running shell's id")
	}
	if err := s.resize(&agent.Request{Op: agent.OpResize, Container: agent.DebugDir, Exec: "sh1", Width: 132, Height: 50}); err != nil {
		t.Fatal(err)
	}
	ws, err := unix.IoctlGetWinsize(int(tty.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col != 132 || ws.Row != 50 {
		t.Errorf("the shell's terminal is %dx%d (%v), want 132x50", ws.Col, ws.Row, err)
	}
	for _, id := range []string{"sh2", ""} {
		if err := s.resize(&agent.Request{Op: agent.OpResize, Container: agent.DebugDir, Exec: id, Width: 1, Height: 1}); err == nil {
			t.Errorf("resized debug shell %q, which does not run", id)
		}
	}
	s.removeDebugShell("sh1")
	if err := s.resize(&agent.Request{Op: agent.OpResize, Container: agent.DebugDir, Exec: "sh1", Width: 1, Height: 1}); err == nil {
		t.Error("resized a debug shell that ended")
	}
}
