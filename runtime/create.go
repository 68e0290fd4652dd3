package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	goruntime "runtime"
	"slices"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/config"
	"golang.org/x/sys/unix"
)

// CreateOptions are the inputs of `runvirt create` (and of run).
type CreateOptions struct {
	Globals
	Config        *config.Config
	Bundle        string
	ID            string
	PidFile       string
	ConsoleSocket string
	PreserveFDs   int
	Log           *slog.Logger
	// Stdio is what the stand-in inherits when there is no console.
	Stdin, Stdout, Stderr *os.File
	// Interrupt, if set, cancels the boot when a signal arrives on it.
	Interrupt <-chan os.Signal
	// Foreground is set by a foreground run: the stand-in may use the
	// caller's terminal, so a terminal needs no console socket.
	Foreground bool
}

// Create boots the container's VM, creates the container in it without
// starting its process, starts the stand-in, writes the pid file and runs
// the createRuntime, createContainer and prestart hooks. Whatever fails
// leaves nothing behind.
func Create(ctx context.Context, o CreateOptions) (*Container, error) {
	c, lock, err := createSandbox(ctx, o)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	var cl cleanup
	defer cl.Run()
	cl.Add(func() { destroy(c, o.Log) })

	spec := c.spec
	if o.PreserveFDs > 0 {
		o.Log.Warn("--preserve-fds: file descriptors cannot cross into the VM; ignoring them (no process runvirt starts gets them)", "count", o.PreserveFDs)
	}
	ns := nsPlanOf(spec)
	if n := c.State.Network; n != nil && n.Own {
		// The namespace runvirt made for the container stands for the new
		// one the spec asks for.
		ns = ns.joining(unix.CLONE_NEWNET, n.NetNS)
	}
	ref, err := spawnStandIn(standInSpec{
		g: o.Globals, d: c.Dir, terminal: spec.Process.Terminal,
		consoleSocket: o.ConsoleSocket, ns: ns,
		stdio: []*os.File{o.Stdin, o.Stdout, o.Stderr},
	})
	if err != nil {
		return nil, err
	}
	// A sandbox's VM lives in its cgroup; a pod's other containers only
	// have their stand-ins in theirs.
	cgroupPids, helpers := []int{ref.Pid}, map[int]bool(nil)
	if c.State.Sandbox == c.State.ID {
		cgroupPids = append(sandboxPids(c.State.Monitor.Pid), ref.Pid)
		helpers = helperPids(c.Dir)
	}
	if _, err := setupHostCgroup(spec, o.ID, cgroupPids, helpers); err != nil {
		syscall.Kill(ref.Pid, syscall.SIGKILL)
		return nil, err
	}
	c.State.StandIn = ref
	c.State.Status = StatusCreated
	if err := SaveState(c.Dir, c.State); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, ref.Pid); err != nil {
			return nil, err
		}
		cl.Add(func() { os.Remove(o.PidFile) })
	}
	st := c.OCIState(StatusCreated)
	for _, k := range []hookKind{hookCreateRuntime, hookCreateContainer, hookPrestart} {
		if err := runHooks(spec.Hooks, k, st); err != nil {
			return nil, err
		}
	}
	// docker ≤ 27 has filled the network namespace from its prestart hook.
	if plumbed, err := plumbLate(ctx, c.Container, o.Log); err != nil {
		return nil, err
	} else if plumbed {
		if err := SaveState(c.Dir, c.State); err != nil {
			return nil, err
		}
	}
	cl.Release()
	return c.Container, nil
}

func writePidFile(path string, pid int) error {
	if err := writeFileAtomic(path, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// created is a container whose VM is up, as create leaves it.
type created struct {
	*Container
	spec *specs.Spec
}

// checkConsole applies runc's rules for terminals and console sockets.
func checkConsole(spec *specs.Spec, consoleSocket string, foreground bool) error {
	switch {
	case spec.Process.Terminal && consoleSocket == "" && !foreground:
		return errors.New("cannot allocate tty if runvirt will detach without setting console socket")
	case !spec.Process.Terminal && consoleSocket != "":
		return errors.New("cannot use console socket if runvirt will not detach or allocate tty")
	}
	return nil
}

// createSandbox validates the inputs, lays out the state directory and the
// share, boots the VM and creates the container in it. It returns holding
// the container's lock. On any failure everything done so far is undone.
func createSandbox(ctx context.Context, o CreateOptions) (*created, *Lock, error) {
	log := o.Log.With("container", o.ID)
	if err := ValidateID(o.ID); err != nil {
		return nil, nil, err
	}
	b, err := LoadBundle(o.Bundle)
	if err != nil {
		return nil, nil, err
	}
	if err := checkConsole(b.Spec, o.ConsoleSocket, o.Foreground); err != nil {
		return nil, nil, err
	}
	sc, warns, err := Resolve(o.Config, DetectHost())
	if err != nil {
		return nil, nil, err
	}
	for _, w := range warns {
		log.Warn(w)
	}
	sc = sc.SizeFor(b.Spec, goruntime.NumCPU())
	if err := sc.checkSize(b.Spec, configName(o.Config)); err != nil {
		return nil, nil, err
	}
	sandbox, err := SandboxOf(o.ID, b.Spec.Annotations)
	if err != nil {
		return nil, nil, err
	}
	if sandbox == o.ID && !hasCRIType(b.Spec.Annotations) {
		if sandbox, err = joinedSandbox(o.Root, o.ID, b.Spec); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", o.ID, err)
		}
	}
	if sandbox != o.ID {
		return createInPod(ctx, o, b, sandbox)
	}
	var cl cleanup
	defer cl.Run()
	d, lock, err := makeStateDir(o.Root, o.ID, &cl)
	if err != nil {
		return nil, nil, err
	}
	if err := d.makeSocketDir(); err != nil {
		return nil, nil, err
	}
	cl.Add(func() { os.RemoveAll(d.SocketDir()) })

	guestSpec, err := prepareShare(d, o.ID, b, &cl)
	if err != nil {
		return nil, nil, err
	}
	guestSpec = forGuest(guestSpec, nil)
	if sc.DebugShell {
		if err := shareDebugShell(d, &cl); err != nil {
			return nil, nil, err
		}
	}

	specJSON, err := json.Marshal(b.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := writeFileAtomic(d.Spec(), specJSON, 0o600); err != nil {
		return nil, nil, fmt.Errorf("save spec: %w", err)
	}
	network, err := plumbNetwork(b.Spec, log)
	if err != nil {
		return nil, nil, err
	}
	if network == nil && sc.LateNetwork && wantsNewNetNS(b.Spec) {
		// Filled later, if at all (docker): see netlate.go.
		if network, err = setupLateNetwork(d.Path()); err != nil {
			return nil, nil, err
		}
	}
	cl.Add(func() { network.teardown() })
	st := &State{
		ID: o.ID, Bundle: b.Dir, Rootfs: b.Rootfs, Created: time.Now().UTC(),
		Owner: currentOwner(), Annotations: b.Spec.Annotations, Sandbox: o.ID,
		Status: StatusCreating, Config: sc, Network: network,
	}
	if err := SaveState(d, st); err != nil {
		return nil, nil, err
	}

	bootCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		select {
		case s := <-o.Interrupt:
			log.Debug("boot interrupted", "signal", s)
			stopWatch()
		case <-bootCtx.Done():
		}
	}()
	// The monitor joins the host memory cgroup before the boot: a failed
	// boot must not leave it behind (it runs after stopSandbox).
	cl.Add(func() { removeHostCgroup(b.Spec, o.ID) })
	t0 := time.Now()
	ref, ready, err := startMonitor(bootCtx, o.Globals, d)
	if ref.Pid > 0 {
		cl.Add(func() {
			stopSandbox(d, ref, log)
			removeHelperCgroup(d)
		})
	}
	if err != nil {
		if bootCtx.Err() != nil && ctx.Err() == nil {
			return nil, nil, fmt.Errorf("create %s: interrupted while the vm booted", o.ID)
		}
		return nil, nil, err
	}
	ms := func(t time.Time) int64 { return t.Sub(t0).Milliseconds() }
	log.Debug("sandbox booted (ms since boot started)", "guest_kernel", ready.Kernel,
		"qemu_started", ms(ready.Boot.QEMUStarted), "guest_boot", ready.Boot.GuestMillis,
		"agent_ready", ms(ready.Boot.AgentReady))
	st.Monitor = ref
	if err := SaveState(d, st); err != nil {
		return nil, nil, err
	}
	c := &Container{Dir: d, State: st, log: log}
	// The NICs and the container are set up side by side: the container
	// shares the guest's network namespace, and its process runs nothing
	// before start, so neither waits for the other (and the guest's vCPU
	// works on one while the other waits for the host).
	netDone := make(chan error, 1)
	if network != nil {
		go func() { netDone <- c.client().Network(ctx, network.guest()) }()
	} else {
		netDone <- nil
	}
	// The guest sets the whole container up here, as runc's init does at
	// create, so a bad mount or a missing executable fails create.
	cerr := c.client().Create(ctx, o.ID, guestSpec, GuestRootfs(o.ID), "")
	if err := <-netDone; err != nil {
		return nil, nil, fmt.Errorf("configure network in vm: %w", err)
	}
	if cerr != nil {
		return nil, nil, createError(cerr)
	}
	log.Debug("guest calls done", "ms_since_agent_ready", time.Since(ready.Boot.AgentReady).Milliseconds())
	cl.Release()
	return &created{Container: c, spec: b.Spec}, lock, nil
}

// makeStateDir makes the container's state directory and takes its lock;
// undo steps go on cl.
func makeStateDir(root, id string, cl *cleanup) (Dir, *Lock, error) {
	d := Dir{Root: root, ID: id}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return d, nil, fmt.Errorf("make root %s: %w", root, err)
	}
	if err := os.Mkdir(d.Path(), 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return d, nil, fmt.Errorf("container %s: %w", id, ErrExist)
		}
		return d, nil, fmt.Errorf("make state dir: %w", err)
	}
	cl.Add(func() { removeMounted(d.Path()) })
	lock, err := LockDir(d)
	if err != nil {
		return d, nil, err
	}
	cl.Add(lock.Unlock)
	return d, lock, nil
}

// destroy stops what a container has on the host: its guest processes,
// its stand-in, its VM (when it owns one), its mounts and its state.
func destroy(c *created, log *slog.Logger) error {
	return destroyContainer(c.Container, log)
}

func destroyContainer(c *Container, log *slog.Logger) error {
	st := c.State
	var errs []error
	if st.StandIn.Alive() {
		syscall.Kill(st.StandIn.Pid, syscall.SIGKILL)
	}
	if st.Sandbox == st.ID {
		if err := stopSandbox(c.Dir, st.Monitor, log); err != nil {
			errs = append(errs, err)
		}
		if err := removeHelperCgroup(c.Dir); err != nil {
			// An empty cgroup left behind is no reason to keep the
			// container.
			log.Warn(err.Error())
		}
		if err := st.Network.teardown(); err != nil {
			errs = append(errs, err)
		}
	} else if err := leaveSandbox(c); err != nil {
		errs = append(errs, err)
	}
	if spec, err := c.Spec(); err == nil {
		removeHostCgroup(spec, st.ID)
	}
	if err := removeMounted(c.Dir.Path()); err != nil {
		errs = append(errs, fmt.Errorf("remove state of %s: %w", c.Dir.ID, err))
	}
	os.RemoveAll(c.Dir.SocketDir())
	return errors.Join(errs...)
}

// forGuest drops what only means something on the host: hooks run on the
// host, and the container shares the guest's network namespace, which holds
// the VM's NICs (the VM is the network boundary). Other namespaces are new
// in the guest, except those of shared (a pod's container sharing its
// sandbox container's): their path becomes agent.SandboxNamespace.
func forGuest(s *specs.Spec, shared []specs.LinuxNamespaceType) *specs.Spec {
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
			if slices.Contains(shared, ns.Type) {
				ns.Path = agent.SandboxNamespace
			}
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
