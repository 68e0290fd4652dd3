package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/config"
)

// RunOptions are the inputs of a foreground `runvirt run`.
type RunOptions struct {
	Globals
	Config *config.Config
	Bundle string
	ID     string
	Log    *slog.Logger
	Stdin  *os.File
	Stdout *os.File
	Stderr *os.File
}

// Run creates a sandbox for the bundle, runs its process in the foreground
// with stdio relayed and signals forwarded, tears everything down and
// returns the process's exit status.
func Run(ctx context.Context, o RunOptions) (status int, err error) {
	sigs, stopSigs := NotifySignals()
	defer stopSigs()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	t0 := time.Now()
	c, err := createSandbox(ctx, o.Globals, o.Config, o.Bundle, o.ID, o.Log, sigs, cancel)
	if err != nil {
		return 0, err
	}
	var started, exited time.Time
	defer func() {
		if derr := c.destroy(o.Log); derr != nil && err == nil {
			err = derr
		}
		ms := func(t time.Time) int64 { return t.Sub(t0).Milliseconds() }
		o.Log.Debug("run timing (ms since runvirt started)", "container", o.ID,
			"qemu_started", ms(c.boot.QEMUStarted), "guest_boot", c.boot.GuestMillis,
			"agent_ready", ms(c.boot.AgentReady), "container_created", ms(c.created),
			"workload_started", ms(started), "workload_exited", ms(exited), "torn_down", ms(time.Now()))
	}()

	terminal := c.spec.Process.Terminal
	relay := &Relay{
		Client: c.client, Container: o.ID, Terminal: terminal,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, Log: o.Log,
	}
	if terminal && isTerminal(o.Stdin) {
		if restore, err := makeRaw(o.Stdin); err == nil {
			defer restore()
		}
	}
	if err := relay.Attach(ctx); err != nil {
		return 0, err
	}
	pid, err := c.client.Start(ctx, o.ID, "")
	if err != nil {
		relay.Close()
		return 0, startError(err)
	}
	started = time.Now()
	c.state.Status, c.state.GuestPid = "running", pid
	SaveState(c.dir, c.state)
	status, err = relay.Wait(context.Background(), sigs)
	exited = time.Now()
	return status, err
}

// startError words a failure to start the workload as runc does, so
// clients (docker maps "executable file not found" to 127) behave the same.
func startError(err error) error {
	var re *agent.RemoteError
	if errors.As(err, &re) && re.Kind == agent.ErrKindExecutable {
		return fmt.Errorf("unable to start container process: %w", err)
	}
	return fmt.Errorf("start container: %w", err)
}

// sandboxContainer is a container that owns its VM, while a verb holds it.
type sandboxContainer struct {
	dir     Dir
	state   *State
	spec    *specs.Spec
	client  *agent.Client
	boot    BootTiming
	created time.Time
}

// createSandbox validates the inputs, lays out the state directory and the
// share, boots the VM and creates the container in it. On any failure
// everything done so far is undone. A forwarded signal that arrives during
// boot cancels it.
func createSandbox(ctx context.Context, g Globals, cfg *config.Config, bundleDir, id string, log *slog.Logger, sigs <-chan os.Signal, cancel func()) (*sandboxContainer, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := LoadBundle(bundleDir)
	if err != nil {
		return nil, err
	}
	sc, warns, err := Resolve(cfg, DetectHost())
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		log.Warn(w)
	}
	d := Dir{Root: g.Root, ID: id}
	if err := d.checkSocketPaths(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(g.Root, 0o711); err != nil {
		return nil, fmt.Errorf("make root %s: %w", g.Root, err)
	}
	var cl cleanup
	defer cl.Run()
	if err := os.Mkdir(d.Path(), 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("container %s: %w", id, ErrExist)
		}
		return nil, fmt.Errorf("make state dir: %w", err)
	}
	cl.Add(func() { removeMounted(d.Path()) })
	lock, err := LockDir(d)
	if err != nil {
		return nil, err
	}
	// Held while the sandbox is being made; other verbs (kill, state) may
	// act on it once it is created.
	defer lock.Unlock()

	guestSpec, err := prepareShare(d, id, b, &cl)
	if err != nil {
		return nil, err
	}
	guestSpec = forGuest(guestSpec)

	st := &State{
		ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Created: time.Now().UTC(),
		Owner: currentOwner(), Annotations: b.Spec.Annotations, Sandbox: id,
		Status: "creating", Config: sc,
	}
	if err := SaveState(d, st); err != nil {
		return nil, err
	}

	bootCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		select {
		case s := <-sigs:
			if s != syscall.SIGWINCH {
				log.Debug("boot interrupted", "signal", s)
				cancel()
			}
		case <-bootCtx.Done():
		}
	}()
	ref, ready, err := startMonitor(bootCtx, g, d)
	stopWatch()
	if ref.Pid > 0 {
		cl.Add(func() { stopSandbox(d, ref, log) })
	}
	if err != nil {
		return nil, err
	}
	log.Debug("sandbox booted", "sandbox", id, "guest_kernel", ready.Kernel)
	st.Monitor = ref
	if err := SaveState(d, st); err != nil {
		return nil, err
	}
	client := connectAgent(d)
	if err := client.Create(ctx, id, guestSpec, GuestRootfs(id)); err != nil {
		return nil, fmt.Errorf("create container in vm: %w", err)
	}
	st.Status = "created"
	if err := SaveState(d, st); err != nil {
		return nil, err
	}
	cl.Release()
	return &sandboxContainer{dir: d, state: st, spec: b.Spec, client: client, boot: ready.Boot, created: time.Now()}, nil
}

// destroy stops the VM and removes every trace of the container.
func (c *sandboxContainer) destroy(log *slog.Logger) error {
	lock, err := LockDir(c.dir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	var errs []error
	if err := stopSandbox(c.dir, c.state.Monitor, log); err != nil {
		errs = append(errs, err)
	}
	if err := removeMounted(c.dir.Path()); err != nil {
		errs = append(errs, fmt.Errorf("remove state of %s: %w", c.dir.ID, err))
	}
	return errors.Join(errs...)
}

// forGuest drops what only means something on the host: hooks run on the
// host, and the container shares the guest's network namespace, which holds
// the VM's NICs (the VM is the network boundary).
func forGuest(s *specs.Spec) *specs.Spec {
	g := *s
	g.Hooks = nil
	if s.Linux != nil {
		l := *s.Linux
		l.Namespaces = nil
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				continue
			}
			ns.Path = ""
			l.Namespaces = append(l.Namespaces, ns)
		}
		g.Linux = &l
	}
	return &g
}

func currentOwner() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
