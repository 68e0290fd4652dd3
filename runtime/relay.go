package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// Relay is the host side of one guest process: the stand-in's work. It
// relays the stdio the caller passed to the guest process's streams,
// forwards signals, and returns the process's exit status.
type Relay struct {
	Client    *agent.Client
	Container string
	Exec      string // "" for the container's init
	Terminal  bool
	Stdin     *os.File // nil: the guest process's stdin is closed at once
	Stdout    *os.File
	Stderr    *os.File
	Log       *slog.Logger

	streams []net.Conn
	outDone chan struct{} // closed when the output streams have ended
}

// outputDrainTimeout bounds the wait for the last output after the process
// exited (the agent closes the streams within its own grace period).
const outputDrainTimeout = 5 * time.Second

// ForwardedSignals are the signals a stand-in passes on to its guest
// process: all catchable ones except those that concern the stand-in itself
// (SIGCHLD), Go's runtime (SIGURG), the terminal (SIGWINCH, turned into a
// resize) and broken output pipes (SIGPIPE).
func ForwardedSignals() []os.Signal {
	var out []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		switch s {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGPIPE:
			continue
		case 32, 33: // glibc-reserved real-time signals
			continue
		}
		out = append(out, s)
	}
	return out
}

// Attach opens the process's stdio streams. Call it before starting the
// process so no output is lost.
func (r *Relay) Attach(ctx context.Context) error {
	open := func(name string) (net.Conn, error) {
		c, err := r.Client.Stdio(ctx, r.Container, r.Exec, name)
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		r.streams = append(r.streams, c)
		return c, nil
	}
	r.outDone = make(chan struct{})
	if r.Terminal {
		pty, err := open(agent.StreamPTY)
		if err != nil {
			r.Close()
			return err
		}
		if r.Stdin != nil {
			go io.Copy(pty, r.Stdin)
		}
		go func() {
			io.Copy(r.Stdout, pty)
			close(r.outDone)
		}()
		return nil
	}
	stdin, err := open(agent.StreamStdin)
	if err != nil {
		r.Close()
		return err
	}
	stdout, err := open(agent.StreamStdout)
	if err != nil {
		r.Close()
		return err
	}
	stderr, err := open(agent.StreamStderr)
	if err != nil {
		r.Close()
		return err
	}
	go func() {
		if r.Stdin != nil {
			io.Copy(stdin, r.Stdin)
		}
		stdin.(interface{ CloseWrite() error }).CloseWrite()
	}()
	outs := make(chan struct{}, 2)
	copyOut := func(dst *os.File, src net.Conn) {
		if dst != nil {
			io.Copy(dst, src)
		} else {
			io.Copy(io.Discard, src)
		}
		outs <- struct{}{}
	}
	go copyOut(r.Stdout, stdout)
	go copyOut(r.Stderr, stderr)
	go func() {
		<-outs
		<-outs
		close(r.outDone)
	}()
	return nil
}

// Close ends every stream.
func (r *Relay) Close() {
	for _, c := range r.streams {
		c.Close()
	}
}

// Wait forwards the signals arriving on sigs to the guest process until w
// answers that it exited, then returns its exit status once its output has
// been written.
func (r *Relay) Wait(ctx context.Context, w *agent.Waiter, sigs <-chan os.Signal) (int, error) {
	defer r.Close()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := w.Result()
		done <- result{st, err}
	}()
	if r.Terminal {
		r.resize(ctx)
	}
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == unix.SIGWINCH {
				r.resize(ctx)
				continue
			}
			r.Log.Debug("forwarding signal", "signal", sig)
			if err := r.Client.Signal(ctx, r.Container, r.Exec, int(sig), false); err != nil {
				r.Log.Debug("forward signal", "signal", sig, "err", err)
			}
		case res := <-done:
			if res.err != nil {
				return 0, res.err
			}
			select {
			case <-r.outDone:
			case <-time.After(outputDrainTimeout):
				r.Log.Warn("output did not end after the process exited", "container", r.Container, "exec", r.Exec)
			}
			return res.status, nil
		}
	}
}

// resize copies the window size of our terminal to the guest's.
func (r *Relay) resize(ctx context.Context) {
	ws := winsizeOf(r.Stdin, r.Stdout)
	if ws == nil {
		return
	}
	if err := r.Client.Resize(ctx, r.Container, r.Exec, ws.Col, ws.Row); err != nil {
		r.Log.Debug("resize", "err", err)
	}
}

// NotifySignals starts catching the forwarded signals (and SIGWINCH).
// Catch them before the process starts, so none is lost or kills the
// stand-in.
func NotifySignals() (chan os.Signal, func()) {
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, append(ForwardedSignals(), unix.SIGWINCH)...)
	return ch, func() { signal.Stop(ch) }
}

// makeRaw puts a terminal in raw mode and returns the restore function.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

var errInterrupted = errors.New("interrupted")

// winsizeOf is the window size of the first of files that is a terminal
// with a size, or nil.
func winsizeOf(files ...*os.File) *unix.Winsize {
	for _, f := range files {
		if f == nil {
			continue
		}
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			return ws
		}
	}
	return nil
}
