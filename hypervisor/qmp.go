package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// QMP is a connected QEMU monitor. go-qemu's SocketMonitor has no deadlines
// of its own and allows one client per socket, so every call here takes a
// context and Close must always be called.
type QMP struct {
	mon *qmp.SocketMonitor
}

// DialQMP connects to the QMP socket at path and completes the capabilities
// handshake within ctx's deadline.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	mon, err := qmp.NewSocketMonitor("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial qmp %s: %w", path, err)
	}
	q := &QMP{mon: mon}
	if err := q.do(ctx, mon.Connect); err != nil {
		mon.Disconnect()
		return nil, fmt.Errorf("qmp handshake: %w", err)
	}
	return q, nil
}

// do runs f, abandoning it (and the connection) when ctx ends first.
func (q *QMP) do(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		q.mon.Disconnect()
		<-done
		return ctx.Err()
	}
}

// Run executes one QMP command and decodes its "return" into out (may be nil).
func (q *QMP) Run(ctx context.Context, command string, out any) error {
	return q.RunArgs(ctx, command, nil, out)
}

// RunArgs is Run for a command that takes arguments (args: nil, or a value
// that encodes as a JSON object).
func (q *QMP) RunArgs(ctx context.Context, command string, args map[string]any, out any) error {
	c := qmp.Command{Execute: command}
	if args != nil {
		c.Args = args
	}
	cmd, err := json.Marshal(c)
	if err != nil {
		return err
	}
	var raw []byte
	err = q.do(ctx, func() error {
		var err error
		raw, err = q.mon.Run(cmd)
		return err
	})
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if out == nil {
		return nil
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("qmp %s: decode: %w", command, err)
	}
	return json.Unmarshal(resp.Return, out)
}

// Status returns the VM's run state ("running", "paused", ...).
func (q *QMP) Status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := q.Run(ctx, "query-status", &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Quit stops QEMU at once.
func (q *QMP) Quit(ctx context.Context) error { return q.Run(ctx, "quit", nil) }

// Close disconnects from the monitor.
func (q *QMP) Close() error { return q.mon.Disconnect() }

// Saving a stopped VM and starting a copy of it (templates). With
// ignoreShared, QEMU's x-ignore-shared capability is set first: RAM in a
// shared, file-backed block is left out of the stream (it is the file); a
// copy maps that file instead of loading it. Both ends must set it.

// SaveStopped stops the VM and migrates it to uri, waiting until the
// migration has completed.
func (q *QMP) SaveStopped(ctx context.Context, uri string, ignoreShared bool) error {
	if err := q.Run(ctx, "stop", nil); err != nil {
		return err
	}
	if ignoreShared {
		if err := q.setIgnoreShared(ctx); err != nil {
			return err
		}
	}
	if err := q.RunArgs(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return err
	}
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := q.Run(ctx, "query-migrate", &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("saving the vm: migration %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saving the vm: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// RestoreAndRun has a QEMU started with -incoming defer load the state at
// uri, and runs the VM once loaded: a VM saved stopped comes back paused.
func (q *QMP) RestoreAndRun(ctx context.Context, uri string, ignoreShared bool) error {
	if ignoreShared {
		if err := q.setIgnoreShared(ctx); err != nil {
			return err
		}
	}
	if err := q.RunArgs(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return err
	}
	for {
		st, err := q.Status(ctx)
		if err != nil {
			return err
		}
		switch st {
		case "running":
			return nil
		case "paused":
			return q.Run(ctx, "cont", nil)
		case "inmigrate", "restore-vm":
		default:
			return fmt.Errorf("restoring the vm: vm status %q", st)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restoring the vm: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (q *QMP) setIgnoreShared(ctx context.Context) error {
	err := q.RunArgs(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}, nil)
	if err != nil {
		return fmt.Errorf("qemu cannot leave shared RAM out of a saved vm (x-ignore-shared): %w", err)
	}
	return nil
}
