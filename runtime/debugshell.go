package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

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
	if err := makeShare(d.Share()); err != nil {
		return err
	}
	dir := filepath.Join(d.Share(), agent.DebugDir)
	cl.Add(func() { removeMounted(dir) })
	if err := bindMount(src, filepath.Join(dir, "busybox"), false, true); err != nil {
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
	if ws, err := unix.IoctlGetWinsize(int(stdout.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		w, h = ws.Col, ws.Row
	}
	conn, err := c.client().DebugShell(ctx, w, h, os.Getenv("TERM"))
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
