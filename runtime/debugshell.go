package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

// debugBusyboxPaths are where the debug shell's static busybox is looked
// for on the host.
var debugBusyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// shareDebugShell puts the host's busybox, read-only, in the share's debug
// directory, for the agent's debug shell. Undo steps go on cl.
func shareDebugShell(d Dir, cl *cleanup) error {
	var src string
	for _, p := range debugBusyboxPaths {
		if _, err := os.Stat(p); err == nil {
			src = p
			break
		}
	}
	if src == "" {
		return errors.New("debug_shell: no static busybox on the host (apt-get install busybox-static)")
	}
	bin, _, err := openSource(src, []string{d.Root, SocketBase})
	if err != nil {
		return fmt.Errorf("debug_shell: %w", err)
	}
	defer bin.Close()
	skel, err := makeShare(d)
	if err != nil {
		return err
	}
	defer skel.Close()
	cl.Add(func() { removeShared(d, agent.DebugDir) })
	if err := bindMount(bin, skel, filepath.Join(agent.DebugDir, "busybox"), false, true, false); err != nil {
		return fmt.Errorf("debug_shell: %w", err)
	}
	return nil
}

// DebugShell connects the caller's terminal (or stdin and stdout) to a
// shell in the guest VM of container id's sandbox, outside the containers.
// It returns once the shell ends.
func DebugShell(ctx context.Context, g Globals, id string, stdin, stdout *os.File, log *slog.Logger) error {
	c, err := Load(g, id, log)
	if err != nil {
		return err
	}
	if !c.State.Config.DebugShell {
		return fmt.Errorf("the debug shell is off for sandbox %s: set debug_shell = true in runvirt's config.toml (it applies to sandboxes created afterwards)", c.State.Sandbox)
	}
	if !c.State.Monitor.Alive() {
		return fmt.Errorf("the vm of sandbox %s is not running", c.State.Sandbox)
	}
	var w, h uint16 = 80, 24
	if ws := winsizeOf(stdout, stdin); ws != nil {
		w, h = ws.Col, ws.Row
	}
	// Catch SIGWINCH before the shell starts, so no resize is lost.
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	defer signal.Stop(winch)
	client := c.client()
	shellID := newShellID()
	conn, err := client.DebugShell(ctx, shellID, w, h, os.Getenv("TERM"))
	if err != nil {
		return fmt.Errorf("debug shell: %w", err)
	}
	defer conn.Close()
	if isTerminal(stdin) {
		restore, err := makeRaw(stdin)
		if err != nil {
			return err
		}
		defer restore()
	}
	done := make(chan struct{})
	defer close(done)
	go relayWinch([]*os.File{stdout, stdin}, winch, done, func(w, h uint16) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return client.ResizeDebugShell(ctx, shellID, w, h)
	}, log)
	go func() {
		io.Copy(conn, stdin)
		if !isTerminal(stdin) {
			// Input from a pipe has ended: end the shell's, as ^D on an
			// empty line would.
			conn.Write([]byte{4})
		}
	}()
	_, err = io.Copy(stdout, conn)
	return err
}

// relayWinch resizes the guest's pty to our terminal's window size (the
// first of ttys that is a terminal) each time SIGWINCH arrives on winch, as
// the container's terminal relay does, until done closes.
func relayWinch(ttys []*os.File, winch <-chan os.Signal, done <-chan struct{}, resize func(w, h uint16) error, log *slog.Logger) {
	for {
		select {
		case <-done:
			return
		case <-winch:
			ws := winsizeOf(ttys...)
			if ws == nil {
				continue
			}
			if err := resize(ws.Col, ws.Row); err != nil {
				log.Debug("resize the debug shell", "err", err)
			}
		}
	}
}

// newShellID names a debug shell for its resizes.
func newShellID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
