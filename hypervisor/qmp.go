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
