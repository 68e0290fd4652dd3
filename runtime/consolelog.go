package runtime

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// The guest's console is the guest's to write: a container with the
// default capabilities can write /dev/console, and /dev/kmsg reaches it
// through the guest kernel's log, as fast as the UART goes. QEMU writing
// straight into console.log let a guest grow the host's state directory
// (a tmpfs on most hosts) without bound. So QEMU writes into a pipe, and
// the monitor copies it into console.log, capped: when the file reaches
// console_log_kib it becomes console.log.1 (replacing the one before) and
// a new console.log starts. At most twice the cap is kept, the newest
// output always among it. The copy never stops reading: a log it cannot
// write is dropped, not left to block QEMU.

// DefaultConsoleLogKiB is the cap on console.log when the configuration
// has none (a sandbox created by an older runvirt).
const DefaultConsoleLogKiB = 1024

// consoleLogMax is the cap, in bytes, for a configured value in KiB.
func consoleLogMax(kib int) int64 {
	if kib <= 0 {
		kib = DefaultConsoleLogKiB
	}
	return int64(kib) << 10
}

// startConsoleLog makes the pipe QEMU writes the guest's console into and
// copies what comes out of it into path, at most max bytes a file (see
// above). It returns the pipe's write end, for QEMU (the caller closes its
// copy once QEMU has it), and a channel closed once the copy has seen the
// end of the pipe: every write end closed, everything written in the log.
// A log that cannot be written any more is reported on log.
func startConsoleLog(path string, max int64, log *slog.Logger) (*os.File, <-chan struct{}, error) {
	l := &consoleLog{path: path, max: max, log: log}
	if err := l.open(); err != nil {
		return nil, nil, err
	}
	// Only this VM's output: an older rotation would be taken for it.
	os.Remove(l.rotated())
	r, w, err := os.Pipe()
	if err != nil {
		l.f.Close()
		return nil, nil, fmt.Errorf("guest console pipe: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		l.copyFrom(r)
	}()
	return w, done, nil
}

// consoleLog is console.log and its one rotation.
type consoleLog struct {
	path string
	max  int64
	log  *slog.Logger
	f    *os.File // nil once a write failed: the rest is dropped
	n    int64    // bytes in f
}

func (l *consoleLog) rotated() string { return l.path + ".1" }

// open starts an empty log at path, readable by root alone (the guest
// decides what it holds).
func (l *consoleLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("open guest console log: %w", err)
	}
	l.f, l.n = f, 0
	return nil
}

// copyFrom copies r into the log until r ends.
func (l *consoleLog) copyFrom(r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			l.write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if l.f != nil {
		l.f.Close()
	}
}

// write appends p, rotating whenever the file is full.
func (l *consoleLog) write(p []byte) {
	for len(p) > 0 && l.f != nil {
		if l.n >= l.max {
			if err := l.rotate(); err != nil {
				l.drop(err)
				return
			}
		}
		chunk := p[:min(int64(len(p)), l.max-l.n)]
		n, err := l.f.Write(chunk)
		l.n += int64(n)
		if err != nil {
			l.drop(err)
			return
		}
		p = p[len(chunk):]
	}
}

// rotate makes the full log the rotation and starts a new one.
func (l *consoleLog) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	if err := os.Rename(l.path, l.rotated()); err != nil {
		return fmt.Errorf("rotate guest console log: %w", err)
	}
	return l.open()
}

// drop gives up on the log after err (a full disk, say): what the guest
// writes from then on is read and discarded.
func (l *consoleLog) drop(err error) {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	l.log.Warn("guest console log stopped; the rest of the console is discarded", "path", l.path, "err", err)
}
