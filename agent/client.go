package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCallTimeout bounds a request that should answer at once.
const DefaultCallTimeout = 30 * time.Second

// Client is the host's side of the protocol. Each call dials a fresh stream
// (through the sandbox monitor's socket, which maps it onto a yamux stream)
// so calls never share state and any process may make them.
type Client struct {
	// Dial opens a new stream to the agent.
	Dial func(ctx context.Context) (net.Conn, error)
	// Timeout bounds each call that answers at once (not Wait, not Stdio
	// traffic). Zero means DefaultCallTimeout.
	Timeout time.Duration
	// Hint, if set, is added to errors of the transport (no answer, a
	// broken stream), never to the agent's own errors: where to look next,
	// such as the guest console's path.
	Hint string
}

// transportErr adds the hint to an error of the transport.
func (c *Client) transportErr(err error) error {
	if c.Hint == "" {
		return err
	}
	return fmt.Errorf("%w; %s", err, c.Hint)
}

// roundTrip sends req on a new stream and reads the response. The stream
// is returned open for the caller to use (stdio) or close. With bounded, the
// response must arrive within the call timeout or ctx; otherwise only ctx
// bounds it.
func (c *Client) roundTrip(ctx context.Context, req *Request, bounded bool) (net.Conn, *Response, error) {
	if bounded {
		t := c.Timeout
		if t == 0 {
			t = DefaultCallTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, nil, c.transportErr(fmt.Errorf("connect to agent: %w", err))
	}
	// Close the stream if ctx ends while we wait for the answer.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := WriteFrame(conn, req); err != nil {
		conn.Close()
		return nil, nil, c.transportErr(fmt.Errorf("agent %s: %w", req.Op, err))
	}
	var resp Response
	if err := ReadFrame(conn, &resp); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, nil, c.transportErr(fmt.Errorf("agent %s: no answer: %w", req.Op, ctx.Err()))
		}
		return nil, nil, c.transportErr(fmt.Errorf("agent %s: %w", req.Op, err))
	}
	if !stop() {
		conn.Close()
		return nil, nil, c.transportErr(fmt.Errorf("agent %s: %w", req.Op, ctx.Err()))
	}
	return conn, &resp, nil
}

func (c *Client) call(ctx context.Context, req *Request) (*Response, error) {
	conn, resp, err := c.roundTrip(ctx, req, true)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return resp, resp.Err()
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.call(ctx, &Request{Op: OpPing})
	return err
}

// Create prepares a container whose root filesystem is at rootfs in the
// guest. sandbox, for a pod's container, is the pod's sandbox container
// whose namespaces the spec may share (see SandboxNamespace).
func (c *Client) Create(ctx context.Context, id string, spec *specs.Spec, rootfs, sandbox string) error {
	_, err := c.call(ctx, &Request{Op: OpCreate, Container: id, Spec: spec, Rootfs: rootfs, Sandbox: sandbox})
	return err
}

// Network configures the guest's NICs as the given interfaces. It may be
// called again with a new scan: addresses, routes and neighbours are
// replaced, not duplicated.
func (c *Client) Network(ctx context.Context, ifaces []Interface) error {
	_, err := c.call(ctx, &Request{Op: OpNetwork, Network: ifaces})
	return err
}

// Exec prepares an extra process in a running container.
func (c *Client) Exec(ctx context.Context, id, exec string, p *specs.Process) error {
	_, err := c.call(ctx, &Request{Op: OpExec, Container: id, Exec: exec, Process: p})
	return err
}

// Start starts a prepared process and returns its guest pid.
func (c *Client) Start(ctx context.Context, id, exec string) (int, error) {
	resp, err := c.call(ctx, &Request{Op: OpStart, Container: id, Exec: exec})
	if err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// Stdio attaches one stdio stream of a process and returns it as a raw
// byte stream. Attach before Start so no output is lost.
func (c *Client) Stdio(ctx context.Context, id, exec, stream string) (net.Conn, error) {
	return c.openStream(ctx, &Request{Op: OpStdio, Container: id, Exec: exec, Stream: stream})
}

// openStream sends req and returns its stream for the raw bytes that follow
// a successful answer.
func (c *Client) openStream(ctx context.Context, req *Request) (net.Conn, error) {
	conn, resp, err := c.roundTrip(ctx, req, true)
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Wait blocks until the process exits (or ctx ends) and returns its status
// as runc reports it.
func (c *Client) Wait(ctx context.Context, id, exec string) (int, error) {
	w, err := c.WaitStream(ctx, id, exec, false)
	if err != nil {
		return 0, err
	}
	return w.Result()
}

// Waiter is a wait request in flight.
type Waiter struct {
	conn      net.Conn
	op        string
	oomKilled bool   // set by Result from the answer
	oomKills  uint64 // set by Result from the answer
}

// WaitStream sends a wait request and returns without waiting for the
// answer. With lifeline, the agent kills the process if this stream ends
// before the process exits (see Request.Lifeline).
func (c *Client) WaitStream(ctx context.Context, id, exec string, lifeline bool) (*Waiter, error) {
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to agent: %w", err)
	}
	req := &Request{Op: OpWait, Container: id, Exec: exec, Lifeline: lifeline}
	if err := WriteFrame(conn, req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent wait: %w", err)
	}
	return &Waiter{conn: conn, op: OpWait}, nil
}

// Result blocks until the process exits and returns its exit status.
func (w *Waiter) Result() (int, error) {
	defer w.conn.Close()
	var resp Response
	if err := ReadFrame(w.conn, &resp); err != nil {
		return 0, fmt.Errorf("agent wait: %w", err)
	}
	if err := resp.Err(); err != nil {
		return 0, err
	}
	w.oomKilled, w.oomKills = resp.OOMKilled, resp.OOMKills
	return resp.ExitStatus, nil
}

// OOMKilled reports, once Result has returned, whether the agent said that
// the container's cgroup saw an OOM kill by the time its init exited.
func (w *Waiter) OOMKilled() bool { return w.oomKilled }

// OOMKills reports, once Result has returned, the container cgroup's OOM
// kill count when its init exited (0 from agents that do not send it).
func (w *Waiter) OOMKills() uint64 { return w.oomKills }

// Close abandons the wait.
func (w *Waiter) Close() error { return w.conn.Close() }

// Signal sends sig to the process, or with all to every process of the
// container.
func (c *Client) Signal(ctx context.Context, id, exec string, sig int, all bool) error {
	_, err := c.call(ctx, &Request{Op: OpSignal, Container: id, Exec: exec, Signal: sig, All: all})
	return err
}

// Resize sets the window size of the process's terminal.
func (c *Client) Resize(ctx context.Context, id, exec string, width, height uint16) error {
	_, err := c.call(ctx, &Request{Op: OpResize, Container: id, Exec: exec, Width: width, Height: height})
	return err
}

// State returns the container's status as the agent sees it.
func (c *Client) State(ctx context.Context, id string) (*Response, error) {
	return c.call(ctx, &Request{Op: OpState, Container: id})
}

// Ps lists the container's processes by guest pid.
func (c *Client) Ps(ctx context.Context, id string) ([]int, error) {
	resp, err := c.call(ctx, &Request{Op: OpPs, Container: id})
	if err != nil {
		return nil, err
	}
	return resp.Pids, nil
}

// Ports lists the TCP ports on which a connection to localhost in container
// id's network namespace finds a listener. The guest wrote the answer: the
// caller bounds and checks it.
func (c *Client) Ports(ctx context.Context, id string) ([]uint16, error) {
	resp, err := c.call(ctx, &Request{Op: OpPorts, Container: id})
	if err != nil {
		return nil, err
	}
	return resp.Ports, nil
}

// DialPort connects to port on localhost in container id's network
// namespace and returns the stream that carries the connection.
func (c *Client) DialPort(ctx context.Context, id string, port uint16) (net.Conn, error) {
	return c.openStream(ctx, &Request{Op: OpDial, Container: id, Port: port})
}

// Delete forgets a stopped container.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.call(ctx, &Request{Op: OpDelete, Container: id})
	return err
}

// Pause freezes every process of the container.
func (c *Client) Pause(ctx context.Context, id string) error {
	_, err := c.call(ctx, &Request{Op: OpPause, Container: id})
	return err
}

// Resume thaws a paused container.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.call(ctx, &Request{Op: OpResume, Container: id})
	return err
}

// Stats returns the container's resource usage in the guest.
func (c *Client) Stats(ctx context.Context, id string) (*Stats, error) {
	resp, err := c.call(ctx, &Request{Op: OpStats, Container: id})
	if err != nil {
		return nil, err
	}
	if resp.Stats == nil {
		return nil, fmt.Errorf("agent %s: response has no stats", OpStats)
	}
	resp.Stats.OOMKills = resp.OOMKills
	return resp.Stats, nil
}

// Update changes the container's resource limits; fields of r left nil keep
// their value.
func (c *Client) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	_, err := c.call(ctx, &Request{Op: OpUpdate, Container: id, Resources: r})
	return err
}

// Shutdown asks the guest to sync and power off. synced reports that the
// guest synced its file systems before answering: nothing is lost if the
// host stops the VM at once.
func (c *Client) Shutdown(ctx context.Context) (synced bool, err error) {
	resp, err := c.call(ctx, &Request{Op: OpShutdown})
	if err != nil {
		return false, err
	}
	return resp.Synced, nil
}

// DebugShell starts a shell in the guest, outside the containers, and
// returns the stream that carries its pty. id names the shell for
// ResizeDebugShell while it runs.
func (c *Client) DebugShell(ctx context.Context, id string, width, height uint16, term string) (net.Conn, error) {
	return c.openStream(ctx, &Request{Op: OpDebugShell, Exec: id, Width: width, Height: height, Term: term})
}

// ResizeDebugShell sets the window size of debug shell id's pty.
func (c *Client) ResizeDebugShell(ctx context.Context, id string, width, height uint16) error {
	return c.Resize(ctx, DebugDir, id, width, height)
}
