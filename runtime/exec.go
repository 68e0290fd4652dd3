package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecFlags are exec's process options, as runc spells them.
type ExecFlags struct {
	ProcessFile    string   // --process: a JSON process spec; the other flags are ignored
	Args           []string // the command
	Cwd            string
	Env            []string
	User           string // UID[:GID]
	AdditionalGids []string
	Caps           []string
	NoNewPrivs     bool
	Tty            bool
}

// BuildExecProcess makes the process an exec runs: from --process, or from
// the container's own process spec with the flags applied, as runc does.
func BuildExecProcess(base *specs.Spec, f ExecFlags) (*specs.Process, error) {
	if f.ProcessFile != "" {
		b, err := os.ReadFile(f.ProcessFile)
		if err != nil {
			return nil, fmt.Errorf("read process file: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("process file %s: %w", f.ProcessFile, err)
		}
		if len(p.Args) == 0 {
			return nil, fmt.Errorf("process file %s: args must not be empty", f.ProcessFile)
		}
		if p.Cwd == "" {
			p.Cwd = "/"
		}
		return &p, nil
	}
	if len(f.Args) == 0 {
		return nil, fmt.Errorf("exec: a command is required (or --process)")
	}
	p := *base.Process
	p.Args = f.Args
	p.Terminal = f.Tty
	p.ConsoleSize = nil
	p.Env = append(append([]string(nil), base.Process.Env...), f.Env...)
	if f.Cwd != "" {
		p.Cwd = f.Cwd
	}
	if f.User != "" {
		u, g, hasGID := strings.Cut(f.User, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("exec --user %q: want UID[:GID] as numbers", f.User)
		}
		p.User.UID = uint32(uid)
		if hasGID {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("exec --user %q: want UID[:GID] as numbers", f.User)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, s := range f.AdditionalGids {
		gid, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("exec --additional-gids %q: not a number", s)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(gid))
	}
	if len(f.Caps) > 0 {
		caps := specs.LinuxCapabilities{}
		if base.Process.Capabilities != nil {
			caps = *base.Process.Capabilities
		}
		for _, c := range f.Caps {
			c = strings.ToUpper(c)
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			caps.Bounding = append(caps.Bounding, c)
			caps.Effective = append(caps.Effective, c)
			caps.Permitted = append(caps.Permitted, c)
			caps.Ambient = append(caps.Ambient, c)
			caps.Inheritable = append(caps.Inheritable, c)
		}
		p.Capabilities = &caps
	}
	if f.NoNewPrivs {
		p.NoNewPrivileges = true
	}
	return &p, nil
}

// ExecOptions are the inputs of `runvirt exec`.
type ExecOptions struct {
	Globals
	ID            string
	Process       *specs.Process
	Detach        bool
	PidFile       string
	ConsoleSocket string
	Log           *slog.Logger
	Stdin         *os.File
	Stdout        *os.File
	Stderr        *os.File
}

// Exec runs an extra process in a running container. Detached, a stand-in
// takes the process's place (its pid goes in the pid file) and Exec returns
// once the process started; otherwise this process relays it and Exec
// returns its exit status.
func Exec(ctx context.Context, o ExecOptions) (int, error) {
	c, err := Load(o.Globals, o.ID, o.Log)
	if err != nil {
		return 0, err
	}
	switch status := c.Status(ctx); status {
	case StatusRunning:
	case StatusPaused:
		return 0, fmt.Errorf("cannot exec in a paused container")
	default:
		return 0, fmt.Errorf("cannot exec in a %s container", status)
	}
	if o.Process.Terminal && o.Detach && o.ConsoleSocket == "" {
		return 0, fmt.Errorf("cannot allocate tty if runvirt will detach without setting console socket")
	}
	if !o.Process.Terminal && o.ConsoleSocket != "" {
		return 0, fmt.Errorf("cannot use console socket if runvirt will not detach or allocate tty")
	}
	execID := newExecID()
	client := c.client()
	if err := client.Exec(ctx, o.ID, execID, o.Process); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", o.ID, err)
	}
	if o.Detach {
		return 0, execDetached(ctx, c, execID, o)
	}

	sigs, stop := NotifySignals()
	defer stop()
	relay := &Relay{
		Client: client, Container: o.ID, Exec: execID, Terminal: o.Process.Terminal,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, Log: o.Log,
	}
	if o.Process.Terminal && isTerminal(o.Stdin) {
		if restore, err := makeRaw(o.Stdin); err == nil {
			defer restore()
		}
	}
	if err := relay.Attach(ctx); err != nil {
		return 0, err
	}
	w, err := client.WaitStream(ctx, o.ID, execID, true)
	if err != nil {
		relay.Close()
		return 0, err
	}
	if _, err := client.Start(ctx, o.ID, execID); err != nil {
		w.Close()
		relay.Close()
		return 0, startError(err)
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, os.Getpid()); err != nil {
			o.Log.Warn(err.Error())
		}
	}
	return relay.Wait(context.Background(), w, sigs)
}

func execDetached(ctx context.Context, c *Container, execID string, o ExecOptions) error {
	var ns nsPlan
	if c.State.StandIn.Alive() {
		spec, err := c.Spec()
		if err != nil {
			return err
		}
		ns = nsPlanOfProcess(spec, c.State.StandIn.Pid)
	}
	ref, err := spawnStandIn(standInSpec{
		g: o.Globals, d: c.Dir, exec: execID, terminal: o.Process.Terminal,
		consoleSocket: o.ConsoleSocket, ns: ns,
		stdio: []*os.File{o.Stdin, o.Stdout, o.Stderr},
	})
	if err != nil {
		return err
	}
	if spec, err := c.Spec(); err == nil {
		if _, err := setupHostCgroup(spec, o.ID, []int{ref.Pid}, nil); err != nil {
			killProcess(ref)
			return err
		}
	}
	if _, err := c.client().Start(ctx, o.ID, execID); err != nil {
		killProcess(ref)
		return startError(err)
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, ref.Pid); err != nil {
			killProcess(ref)
			return err
		}
	}
	return nil
}

func killProcess(ref ProcessRef) {
	if ref.Alive() {
		if p, err := os.FindProcess(ref.Pid); err == nil {
			p.Kill()
		}
	}
}

func newExecID() string {
	var b [8]byte
	rand.Read(b[:])
	return "exec-" + hex.EncodeToString(b[:])
}
