package guest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/creack/pty"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// debugShell starts a shell in the guest itself, outside every container,
// on a new pty whose bytes the stream then carries both ways. The shell is
// the busybox the host put in the share's debug directory, which it does
// only for sandboxes whose configuration enables the debug shell; without
// it there is no shell to start. The shell ends when the stream does.
// While it runs, OpResize with the id the host gave (req.Exec) resizes its
// pty.
func (s *Server) debugShell(req *agent.Request) (*agent.Response, func(net.Conn)) {
	busybox := filepath.Join(agent.GuestShareDir, agent.DebugDir, "busybox")
	if _, err := os.Stat(busybox); err != nil {
		return errResp(&agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "the debug shell is not enabled for this sandbox"}), nil
	}
	id := req.Exec
	if len(id) > 64 {
		return errResp(&agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: "debug shell id longer than 64 bytes"}), nil
	}
	cmd := exec.Command(busybox, "sh", "-l")
	cmd.Dir = "/"
	// busybox runs its applets without a PATH to find them in.
	cmd.Env = []string{"HOME=/", "TERM=" + req.Term, "PS1=runvirt-guest# ", "ENV="}
	size := &pty.Winsize{Rows: req.Height, Cols: req.Width}
	if size.Rows == 0 || size.Cols == 0 {
		size = &pty.Winsize{Rows: 24, Cols: 80}
	}
	s.reaper.Lock()
	ptmx, err := pty.StartWithAttrs(cmd, size, &syscall.SysProcAttr{Setsid: true, Setctty: true})
	var exited <-chan int
	if err == nil {
		exited = s.reaper.registerLocked(cmd.Process.Pid)
	}
	s.reaper.Unlock()
	if err != nil {
		return errResp(fmt.Errorf("start the debug shell: %w", err)), nil
	}
	if err := s.addDebugShell(id, ptmx); err != nil {
		unix.Kill(cmd.Process.Pid, unix.SIGKILL)
		ptmx.Close()
		go func() { <-exited }()
		return errResp(err), nil
	}
	s.log.Info("debug shell started", "pid", cmd.Process.Pid, "id", id)
	return &agent.Response{Pid: cmd.Process.Pid}, func(st net.Conn) {
		go func() {
			io.Copy(ptmx, st)
			// The host side is gone: so is the shell.
			unix.Kill(-cmd.Process.Pid, unix.SIGHUP)
			unix.Kill(cmd.Process.Pid, unix.SIGKILL)
		}()
		io.Copy(st, ptmx)
		status := <-exited
		s.removeDebugShell(id)
		ptmx.Close()
		st.Close()
		s.log.Info("debug shell ended", "pid", cmd.Process.Pid, "status", status)
	}
}

// addDebugShell records a running shell's pty under id ("": a shell that
// is not resized, as an older host starts).
func (s *Server) addDebugShell(id string, ptmx *os.File) error {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.shells[id]; ok {
		return &agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: fmt.Sprintf("a debug shell %q runs already", id)}
	}
	s.shells[id] = ptmx
	return nil
}

func (s *Server) removeDebugShell(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.shells, id)
}

// resizeDebugShell sets the window size of debug shell id's pty; the
// kernel sends the shell SIGWINCH.
func (s *Server) resizeDebugShell(id string, ws *unix.Winsize) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ptmx, ok := s.shells[id]
	if !ok || id == "" {
		return &agent.RemoteError{Kind: agent.ErrKindNotFound, Msg: fmt.Sprintf("no debug shell %q", id)}
	}
	return setWinsize(ptmx, ws)
}
