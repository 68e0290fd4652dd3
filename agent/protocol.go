// Package agent holds both ends of the host↔guest protocol and the guest
// agent itself (the guest's PID 1).
//
// The wire: one byte stream (a virtio-serial port or a vsock connection)
// carries a yamux session; the host opens one yamux stream per request. Every
// stream starts with one length-prefixed JSON Request frame from the host and
// one Response frame from the agent. For OpStdio the stream then carries the raw
// bytes of that stdio stream, and for OpDial those of a TCP connection in the
// guest; for OpWait the response arrives when the process has exited. Before the yamux session starts, the agent writes one Hello frame
// so the host learns that the guest is ready (and which protocol it speaks)
// without dialling blindly.
//
// The host never trusts the guest: every frame read on the host is bounded by
// MaxFrameSize and read under a deadline by the caller.
package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ProtocolVersion is bumped whenever a message changes incompatibly. The
// host refuses an agent that speaks another version.
const ProtocolVersion = 2

// MaxFrameSize bounds one JSON frame in either direction. An OCI spec is a
// few KiB; 1 MiB leaves room for large environments and annotations while
// keeping a hostile peer from making us allocate without bound.
const MaxFrameSize = 1 << 20

// Request operations.
const (
	OpCreate   = "create"   // set up a container, its init waiting before execve: Container, Spec, Rootfs
	OpStart    = "start"    // start a process created before: Container, Exec
	OpExec     = "exec"     // prepare an extra process: Container, Exec, Process
	OpStdio    = "stdio"    // attach a stdio stream: Container, Exec, Stream
	OpWait     = "wait"     // wait for exit: Container, Exec
	OpSignal   = "signal"   // Container, Exec ("" = init), Signal, All
	OpResize   = "resize"   // Container, Exec, Width, Height (a debug shell: Container DebugDir, Exec its id)
	OpState    = "state"    // Container
	OpPs       = "ps"       // Container: pids as seen from the guest
	OpDelete   = "delete"   // Container: forget a stopped container
	OpPause    = "pause"    // Container: freeze every process of the container
	OpResume   = "resume"   // Container: thaw a paused container
	OpStats    = "stats"    // Container: resource usage (Response.Stats)
	OpUpdate   = "update"   // Container, Resources: change the resource limits
	OpNetwork  = "network"  // Network: configure the guest's NICs (idempotent)
	OpShutdown = "shutdown" // sync the guest and power it off
	// OpDebugShell starts a shell in the guest, outside the containers, on
	// a pty the stream then carries: Width, Height, Term, and Exec, an id
	// the host chose, by which OpResize (with Container DebugDir) resizes
	// the shell's pty while it runs. Only sandboxes whose configuration
	// enables it have the shell (see DebugDir).
	OpDebugShell = "debug-shell"
	OpPing       = "ping"
	// OpPorts lists the TCP ports that a connection to localhost in
	// Container's network namespace reaches (Response.Ports), at most
	// MaxPorts, lowest first: what the host mirrors for port-forward.
	OpPorts = "ports"
	// OpDial connects to Port on localhost (127.0.0.1, then ::1) in
	// Container's network namespace; the stream then carries the
	// connection's bytes, each side's end passed on as a half-close.
	OpDial = "dial"
)

// MaxPorts bounds the ports an OpPorts answer lists, and the listeners the
// host mirrors for one sandbox.
const MaxPorts = 64

// Stdio stream names for OpStdio. StreamPTY is the single bidirectional
// stream of a process with a terminal.
const (
	StreamStdin  = "stdin"
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamPTY    = "pty"
)

// GuestShareDir is where the agent mounts the host's shared directory. The
// host lays out one subdirectory per container in it (see SharePath).
const GuestShareDir = "/run/runvirt/shared"

// DebugDir is the directory of the share where the host puts the debug
// shell's busybox, for sandboxes that enable it. Its name is no valid
// container ID, so no container's directory can take it.
const DebugDir = "@debug"

// SandboxNamespace, as the path of a namespace in an OpCreate spec, means
// the namespace of that type of the pod's sandbox container (Request.Sandbox).
const SandboxNamespace = "runvirt:sandbox"

// AgentPortName is the name of the virtio-serial port the agent talks on.
const AgentPortName = "runvirt.agent"

// ShareTag is the mount tag of the shared directory (9p and virtio-fs).
const ShareTag = "runvirt"

// Hello is the first frame the agent writes once it is ready for requests.
type Hello struct {
	Version      int    `json:"version"`
	AgentVersion string `json:"agent_version,omitempty"`
	Kernel       string `json:"kernel,omitempty"` // the guest's uname -r
	// BootMillis is the guest's CLOCK_BOOTTIME when the agent became ready:
	// kernel boot plus agent start, as the guest measured it.
	BootMillis int64 `json:"boot_ms,omitempty"`
	// Template: this agent boots a template VM (runvirt.template=1). It
	// says this hello once booted, without the share mounted, and then
	// waits for a Wake: the host saves the VM while it waits, and each copy
	// restored from it gets a Wake of its own, then says a normal hello.
	Template bool `json:"template,omitempty"`
}

// Wake is the host's first frame to an agent restored from a template:
// what must differ between copies of one saved VM.
type Wake struct {
	// UnixNano is the host's clock (the copy's is the template's).
	UnixNano int64 `json:"unix_nano"`
	// Seed is fresh randomness from the host: the copy mixes it into its
	// kernel's pool and reseeds, so copies do not share the template's
	// random state. At least WakeSeedBytes.
	Seed []byte `json:"seed"`
	// MACs gives each NIC of the copy its sandbox's MAC: the template's
	// NICs carry the template's MACs, saved with the VM.
	MACs []MACChange `json:"macs,omitempty"`
}

// MACChange is one NIC's MAC in the template (From) and in the copy (To).
type MACChange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// WakeSeedBytes is the least randomness a Wake carries.
const WakeSeedBytes = 32

// Request is the first frame of every stream.
type Request struct {
	Op        string `json:"op"`
	Container string `json:"container,omitempty"`
	Exec      string `json:"exec,omitempty"` // "" means the container's init process

	// OpCreate: the spec with mount sources already rewritten to guest paths,
	// and the guest path of the root filesystem.
	Spec   *specs.Spec `json:"spec,omitempty"`
	Rootfs string      `json:"rootfs,omitempty"`
	// Sandbox (OpCreate), for a container of a pod, is the pod's sandbox
	// container: spec namespaces whose path is SandboxNamespace are its.
	Sandbox string `json:"sandbox,omitempty"`

	// OpExec: the process to run in the container.
	Process *specs.Process `json:"process,omitempty"`

	Stream string `json:"stream,omitempty"` // OpStdio
	// Lifeline (OpWait): the waiter stands in for the process on the host.
	// If its stream ends before the process exits, the waiter died (a
	// SIGKILLed stand-in) and the agent kills the process, so it can never
	// outlive the host process a client is waiting on.
	Lifeline bool   `json:"lifeline,omitempty"`
	Signal   int    `json:"signal,omitempty"` // OpSignal
	All      bool   `json:"all,omitempty"`    // OpSignal: every process of the container
	Width    uint16 `json:"width,omitempty"`  // OpResize, OpDebugShell
	Height   uint16 `json:"height,omitempty"` // OpResize, OpDebugShell
	Term     string `json:"term,omitempty"`   // OpDebugShell: $TERM

	// OpDial: the TCP port to connect to.
	Port uint16 `json:"port,omitempty"`

	// OpUpdate: the new limits; fields left nil keep their value.
	Resources *specs.LinuxResources `json:"resources,omitempty"`

	// OpNetwork: the interfaces of the container's network namespace that
	// the guest's NICs stand for.
	Network []Interface `json:"network,omitempty"`
}

// Interface is one network interface of the container's network namespace
// (a veth, say), as the guest NIC that takes its place must look: the guest
// finds the NIC by MAC and gives it the rest. Addresses are CIDR strings
// ("10.0.0.2/24", "fd00::2/64"); IPv6 link-local addresses are left out, as
// the guest kernel derives the same ones from the same MAC.
type Interface struct {
	Name string `json:"name"` // the interface's name in the namespace (eth0)
	MAC  string `json:"mac"`
	// BootMAC, when set, is the MAC the NIC was booted with (a spare NIC
	// that an interface took over after boot): the guest finds the NIC by
	// it and gives it MAC.
	BootMAC string `json:"boot_mac,omitempty"`
	// Spare: a NIC no interface stands behind yet. The guest keeps it out
	// of the containers' sight until an interface takes it over.
	Spare     bool       `json:"spare,omitempty"`
	MTU       int        `json:"mtu,omitempty"`
	Addrs     []string   `json:"addrs,omitempty"`
	Routes    []Route    `json:"routes,omitempty"`
	Neighbors []Neighbor `json:"neighbors,omitempty"`
}

// Route is a route of the main table through an Interface. Routes the kernel
// made itself for an address (proto kernel) are left out: adding the address
// in the guest makes them again.
type Route struct {
	Dest    string `json:"dest"`              // CIDR; 0.0.0.0/0 or ::/0 is the default route
	Gateway string `json:"gateway,omitempty"` // "" for a directly connected network
	Source  string `json:"source,omitempty"`  // preferred source address
	Scope   uint8  `json:"scope,omitempty"`   // RT_SCOPE_*: 0 universe, 253 link
	Metric  int    `json:"metric,omitempty"`
	OnLink  bool   `json:"onlink,omitempty"` // the gateway is on the link whatever the prefixes say
}

// Neighbor is a static (permanent) neighbour entry; learned ones are left
// to the guest to learn again.
type Neighbor struct {
	IP  string `json:"ip"`
	MAC string `json:"mac"`
}

// Response answers a Request. Error is empty on success.
type Response struct {
	Error string `json:"error,omitempty"`
	// ErrorKind classifies Error for the host: see the ErrKind constants.
	ErrorKind string `json:"error_kind,omitempty"`

	Pid        int      `json:"pid,omitempty"`         // guest pid (OpStart, OpState)
	ExitStatus int      `json:"exit_status,omitempty"` // OpWait: 128+N for signal N
	Status     string   `json:"status,omitempty"`      // OpState: created|running|stopped
	Pids       []int    `json:"pids,omitempty"`        // OpPs
	Ports      []uint16 `json:"ports,omitempty"`       // OpPorts
	Stats      *Stats   `json:"stats,omitempty"`       // OpStats
	// OOMKilled (OpWait of a container's init): the container's guest
	// cgroup counted an OOM kill (memory.events oom_kill) by the time its
	// init exited. The host turns it into the clients' own OOM signal.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// OOMKills (OpStats; OpWait of a container's init): the container
	// cgroup's memory.events oom_kill count so far (for a wait: when the init
	// exited), so that `runvirt events` can report each new one, including
	// one that ended the container. Agents before it leave it 0 on a wait.
	OOMKills uint64 `json:"oom_kills,omitempty"`
	// Synced (OpShutdown): the guest's file systems were synced before the
	// answer, so the host may stop the VM without waiting for the guest's
	// own power-off. Agents before it leave it false.
	Synced bool `json:"synced,omitempty"`
}

// Error kinds, so the host can map guest failures to runc's wording.
const (
	ErrKindNotFound   = "not-found"  // unknown container or process
	ErrKindExecutable = "executable" // the workload could not be executed
	ErrKindState      = "state"      // wrong state for the operation
	ErrKindInvalid    = "invalid"    // malformed request
)

// RemoteError is an error the agent reported.
type RemoteError struct {
	Kind string
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Err returns the response's error, or nil.
func (r *Response) Err() error {
	if r.Error == "" {
		return nil
	}
	return &RemoteError{Kind: r.ErrorKind, Msg: r.Error}
}

// ErrFrameTooLarge is returned for a frame over MaxFrameSize.
var ErrFrameTooLarge = errors.New("frame exceeds maximum size")

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	if len(b) > MaxFrameSize {
		return fmt.Errorf("encode frame of %d bytes: %w", len(b), ErrFrameTooLarge)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame into v. It never allocates more than
// MaxFrameSize for the body, whatever the peer claims.
func ReadFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameSize {
		return fmt.Errorf("read frame of %d bytes: %w", n, ErrFrameTooLarge)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("read frame body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	return nil
}
