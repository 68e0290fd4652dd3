package guest

import (
	"context"
	"errors"
	"fmt"
	"github.com/runvirt/runvirt/agent"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// Values of BootConfig.Transport and BootConfig.SharedFS.
const (
	TransportSerial = "serial"
	TransportVsock  = "vsock"

	ShareVirtioFS = "virtio-fs"
	Share9P       = "9p"
)

// HostCID is the vsock context ID of the host.
const HostCID = 2

// Guest-side paths written by guest-image/build.sh.
const (
	modulesListPath = "/etc/runvirt/modules"
	// newRootDir is where Boot builds the tmpfs that becomes "/".
	newRootDir = "/newroot"
)

// cgroupControllers are enabled for the containers' cgroups, best effort;
// cpuset so that a container reads its cpuset.cpus.effective.
var cgroupControllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

// How long Boot waits for devices that appear asynchronously. Generous
// because a TCG guest runs roughly ten times slower than a KVM one.
const (
	portWaitTimeout = 10 * time.Second
	vsockDialTimout = 10 * time.Second
)

// BootConfig is what the host put on the kernel command line (runvirt.* keys).
type BootConfig struct {
	Transport string // "serial" | "vsock"      (runvirt.transport=)
	VsockPort uint32 // host port to dial        (runvirt.vsock_port=)
	SharedFS  string // "virtio-fs" | "9p"       (runvirt.share=); "" mounts nothing
	Debug     bool   // runvirt.debug=1
	// Template: boot a template VM (runvirt.template=1): the share is
	// mounted only after the host's Wake (see agent.Hello.Template).
	Template bool
}

// ParseCmdline reads the runvirt.* keys of a kernel command line (the
// contents of /proc/cmdline). Keys of other subsystems are ignored; an unknown
// runvirt.* key is an error so that a host/guest mismatch shows at once rather
// than as a silently ignored option. A later key overrides an earlier one, as
// for the kernel's own parameters. Transport defaults to serial.
func ParseCmdline(cmdline string) (BootConfig, error) {
	cfg := BootConfig{Transport: TransportSerial}
	for _, arg := range splitCmdline(cmdline) {
		key, val, hasVal := strings.Cut(arg, "=")
		name, ok := strings.CutPrefix(key, "runvirt.")
		if !ok {
			continue
		}
		switch name {
		case "transport":
			switch val {
			case TransportSerial, TransportVsock:
				cfg.Transport = val
			default:
				return BootConfig{}, fmt.Errorf("parse kernel command line: %s=%q: want %s or %s", key, val, TransportSerial, TransportVsock)
			}
		case "vsock_port":
			port, err := strconv.ParseUint(val, 10, 32)
			if err != nil || port == 0 {
				return BootConfig{}, fmt.Errorf("parse kernel command line: %s=%q: want a port number from 1 to %d", key, val, uint32(1<<32-1))
			}
			cfg.VsockPort = uint32(port)
		case "share":
			switch val {
			case ShareVirtioFS, Share9P:
				cfg.SharedFS = val
			default:
				return BootConfig{}, fmt.Errorf("parse kernel command line: %s=%q: want %s or %s", key, val, ShareVirtioFS, Share9P)
			}
		case "debug", "template":
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return BootConfig{}, fmt.Errorf("parse kernel command line: %s=%q: want 0 or 1", key, val)
				}
			}
			if name == "debug" {
				cfg.Debug = b
			} else {
				cfg.Template = b
			}
		default:
			return BootConfig{}, fmt.Errorf("parse kernel command line: unknown key %q", key)
		}
	}
	if cfg.Transport == TransportVsock && cfg.VsockPort == 0 {
		return BootConfig{}, errors.New("parse kernel command line: runvirt.transport=vsock needs runvirt.vsock_port")
	}
	return cfg, nil
}

// splitCmdline splits a kernel command line the way the kernel's next_arg
// does: on spaces, with double quotes grouping (and removed), and stopping at
// a bare "--" (what follows belongs to init's argv).
func splitCmdline(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, inArg := false, false
	for i := 0; i <= len(s); i++ {
		if i == len(s) || (!inQuote && isCmdlineSpace(s[i])) {
			if inArg {
				if cur.String() == "--" {
					return args
				}
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
			continue
		}
		inArg = true
		if s[i] == '"' {
			inQuote = !inQuote
			continue
		}
		cur.WriteByte(s[i])
	}
	return args
}

func isCmdlineSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// moduleParams returns the parameters the kernel command line gives module
// name ("virtio_mmio.device=..." gives "device=..." to virtio_mmio), joined
// for finit_module. The kernel applies such parameters only to built-in code;
// for loadable modules modprobe passes them, and we stand in for modprobe.
// '-' and '_' in module names are the same, as everywhere in kmod.
func moduleParams(cmdline, name string) string {
	name = strings.ReplaceAll(name, "-", "_")
	var params []string
	for _, arg := range splitCmdline(cmdline) {
		mod, param, ok := strings.Cut(arg, ".")
		if !ok || strings.ReplaceAll(mod, "-", "_") != name || param == "" {
			continue
		}
		// Re-quote values with spaces, as the module parser expects.
		if k, v, hasVal := strings.Cut(param, "="); hasVal && strings.ContainsAny(v, " \t") {
			param = k + `="` + v + `"`
		}
		params = append(params, param)
	}
	return strings.Join(params, " ")
}

// moduleName is the kernel's name of the module at path: base name without
// .ko, '-' turned into '_'.
func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// Boot does everything PID 1 must do before the agent can serve, and returns
// the connection to the host: the virtio-serial port named "runvirt.agent"
// or a vsock connection to the host's VsockPort, as the command line says.
//
// Order matters. The modules live in the initramfs, so they are loaded
// before the switch to a tmpfs root; the switch itself is needed because
// pivot_root(2) refuses the initramfs (rootfs) as the old root, and every
// container is set up with pivot_root.
//
// Boot refuses to run unless it is PID 1: it moves /proc, /sys and /dev and
// changes the root, which must never happen on a host by mistake.
func Boot() (BootConfig, io.ReadWriteCloser, error) {
	if os.Getpid() != 1 {
		return BootConfig{}, nil, fmt.Errorf("boot: running as pid %d, not as the guest's init", os.Getpid())
	}
	start := time.Now()
	for _, m := range []mountSpec{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	} {
		if err := m.mount(); err != nil {
			return BootConfig{}, nil, fmt.Errorf("boot: %w", err)
		}
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return BootConfig{}, nil, fmt.Errorf("boot: %w", err)
	}
	cfg, err := ParseCmdline(string(cmdline))
	// Log to the console even when the command line is bad: that error is
	// exactly what the host's console log must show.
	setupLogging(cfg.Debug)
	if err != nil {
		return BootConfig{}, nil, fmt.Errorf("boot: %w", err)
	}
	slog.Info("agent starting", "component", "boot", "since_kernel_start", sinceKernelStart(), "config", fmt.Sprintf("%+v", cfg))

	if err := loadModules(modulesListPath, string(cmdline)); err != nil {
		return cfg, nil, fmt.Errorf("boot: %w", err)
	}
	// The modules' files are dead weight in guest RAM from now on.
	if err := os.RemoveAll("/lib/modules"); err != nil {
		slog.Warn("free initramfs modules", "component", "boot", "err", err)
	}
	if err := switchRoot(newRootDir); err != nil {
		return cfg, nil, fmt.Errorf("boot: %w", err)
	}
	for _, m := range []mountSpec{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	} {
		if err := m.mount(); err != nil {
			return cfg, nil, fmt.Errorf("boot: %w", err)
		}
	}
	setupCgroups("/sys/fs/cgroup", "runvirt")
	if err := setHostname("runvirt"); err != nil {
		return cfg, nil, fmt.Errorf("boot: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return cfg, nil, fmt.Errorf("boot: %w", err)
	}
	if !cfg.Template {
		if err := mountShare(cfg.SharedFS); err != nil {
			return cfg, nil, fmt.Errorf("boot: %w", err)
		}
	}
	conn, err := connectHost(cfg)
	if err != nil {
		return cfg, nil, fmt.Errorf("boot: %w", err)
	}
	if cfg.Template {
		// Work every copy would do alike is done once, here: the
		// namespace that parks a spare NIC (late_network) costs tens of
		// ms of guest time to make.
		if _, _, err := parkingNS(); err != nil {
			slog.Warn("make the nic parking namespace", "component", "boot", "err", err)
		}
		// The host saves the VM during this wait; what follows runs in
		// each copy restored from it.
		if err := awaitWake(conn); err != nil {
			conn.Close()
			return cfg, nil, fmt.Errorf("boot: template: %w", err)
		}
		if err := mountShare(cfg.SharedFS); err != nil {
			conn.Close()
			return cfg, nil, fmt.Errorf("boot: %w", err)
		}
	}
	slog.Info("agent booted", "component", "boot", "took", time.Since(start).Round(time.Millisecond),
		"since_kernel_start", sinceKernelStart())
	return cfg, conn, nil
}

// PowerOff syncs the file systems and powers the VM off; QEMU exits. It
// never returns.
//
// A kernel without a power-off method (no ACPI: a minimal kernel, or
// -M microvm,acpi=off) turns LINUX_REBOOT_CMD_POWER_OFF into a halt that
// never ends, so without ACPI it resets instead: QEMU runs with -no-reboot,
// so a reset ends it too (reboot=t on the kernel command line makes the reset
// a triple fault, which needs no firmware). If both fail it exits, which
// panics the kernel, and panic=-1 resets the machine.
func PowerOff() {
	unix.Sync()
	if _, err := os.Stat("/sys/firmware/acpi"); err == nil {
		err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		slog.Error("power off failed, resetting", "component", "boot", "err", err)
	}
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	slog.Error("reset failed, exiting init", "component", "boot", "err", err)
	os.Exit(1)
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func (m mountSpec) mount() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// setupLogging points the standard streams and the default logger at the
// console, which the host captures to a file. With debug the log also goes
// to /dev/kmsg, interleaved with the kernel's messages, and the kernel's
// console log level is raised so those reach the console too.
func setupLogging(debug bool) {
	level := slog.LevelInfo
	var w io.Writer = io.Discard
	// Stdout and stderr go to the console (the runtime's panics with them),
	// stdin reads nothing. The Go runtime made sure fds 0-2 are open, so the
	// files opened here land above them.
	if null, err := os.Open("/dev/null"); err == nil {
		_ = unix.Dup3(int(null.Fd()), 0, 0)
		null.Close()
	}
	if console, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		w = console
		_ = unix.Dup3(int(console.Fd()), 1, 0)
		_ = unix.Dup3(int(console.Fd()), 2, 0)
	}
	if debug {
		level = slog.LevelDebug
		if kmsg, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			w = io.MultiWriter(w, kmsgWriter{kmsg})
		}
		_ = os.WriteFile("/proc/sys/kernel/printk", []byte("7"), 0)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
}

// kmsgWriter writes each log record as one /dev/kmsg record at KERN_INFO.
// slog's handlers write a record in a single Write call.
type kmsgWriter struct{ f *os.File }

func (k kmsgWriter) Write(p []byte) (int, error) {
	if _, err := k.f.Write(append([]byte("<6>runvirt-agent: "), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sinceKernelStart is the time since the kernel started (CLOCK_BOOTTIME).
func sinceKernelStart() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano()).Round(time.Millisecond)
}

// loadModules loads every module listed in listPath (one path a line, in
// load order) with finit_module, giving each the parameters the kernel
// command line holds for it. A module that is already loaded (or built in
// and listed anyway) is fine; a missing file is an error naming it.
func loadModules(listPath, cmdline string) error {
	list, err := os.ReadFile(listPath)
	if err != nil {
		return fmt.Errorf("load modules: %w", err)
	}
	start := time.Now()
	n := 0
	for _, path := range strings.Fields(string(list)) {
		t := time.Now()
		params := moduleParams(cmdline, moduleName(path))
		if err := finitModule(path, params); err != nil {
			return fmt.Errorf("load modules: %w", err)
		}
		n++
		slog.Debug("module loaded", "component", "boot", "module", path, "params", params, "took", time.Since(t))
	}
	slog.Info("modules loaded", "component", "boot", "count", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func finitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("module %s: %w", moduleName(path), err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("module %s: finit_module %s: %w", moduleName(path), path, err)
	}
	return nil
}

// switchRoot makes a fresh tmpfs the root file system, switch_root style:
// mount it at dir, move /proc, /sys and /dev into it, move it onto "/" and
// chroot into it. The initramfs stays underneath, unreachable (the running
// agent binary is the only thing left in it).
func switchRoot(dir string) error {
	if err := (mountSpec{"rootfs", dir, "tmpfs", 0, "mode=0755"}).mount(); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("switch root: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	// Keep the guest's identity files readable after the switch.
	if b, err := os.ReadFile("/etc/runvirt/kernel.release"); err == nil {
		_ = os.MkdirAll(filepath.Join(dir, "etc/runvirt"), 0o755)
		_ = os.WriteFile(filepath.Join(dir, "etc/runvirt/kernel.release"), b, 0o644)
	}
	for _, m := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Mount(m, filepath.Join(dir, m), "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch root: move %s: %w", m, err)
		}
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return nil
}

// setupCgroups creates the parent cgroup of the containers and enables the
// controllers they need in it. Best effort: a kernel without one of them
// still runs containers, only without that limit, so this only logs.
func setupCgroups(root, child string) {
	dir := filepath.Join(root, child)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		slog.Warn("create cgroup", "component", "boot", "cgroup", dir, "err", err)
		return
	}
	// Only the controllers this kernel has (the minimal kernel has no
	// block layer, so no io controller).
	have := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			have[c] = true
		}
	}
	for _, d := range []string{root, dir} {
		for _, c := range cgroupControllers {
			if len(have) > 0 && !have[c] {
				continue
			}
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				slog.Warn("enable cgroup controller", "component", "boot", "cgroup", d, "controller", c, "err", err)
			}
		}
	}
}

func setHostname(name string) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	if cur := unix.ByteSliceToString(uts.Nodename[:]); cur != "" && cur != "(none)" {
		return nil
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %s: %w", name, err)
	}
	return nil
}

// loopbackUp brings lo up; the kernel then gives it 127.0.0.1/8 and ::1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: set flags: %w", err)
	}
	return nil
}

// share9POptions: 9p2000.L over virtio with 256 KiB messages, and
// cache=mmap so that shared mappings of shared files work (without it mmap
// with MAP_SHARED fails) without cache=loose's staleness between host and
// guest. See guest-image/README.md for the measurements.
const share9POptions = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"

func mountShare(fs string) error {
	var m mountSpec
	switch fs {
	case "":
		return nil
	case Share9P:
		m = mountSpec{agent.ShareTag, agent.GuestShareDir, "9p", unix.MS_NODEV, share9POptions}
	case ShareVirtioFS:
		m = mountSpec{agent.ShareTag, agent.GuestShareDir, "virtiofs", unix.MS_NODEV, ""}
	default:
		return fmt.Errorf("mount share: unknown file system %q", fs)
	}
	if err := m.mount(); err != nil {
		return fmt.Errorf("mount share: %w", err)
	}
	return nil
}

func connectHost(cfg BootConfig) (io.ReadWriteCloser, error) {
	switch cfg.Transport {
	case TransportVsock:
		ctx, cancel := context.WithTimeout(context.Background(), vsockDialTimout)
		defer cancel()
		c, err := vsock.DialContext(ctx, HostCID, cfg.VsockPort, nil)
		if err != nil {
			return nil, fmt.Errorf("connect to host: vsock %d:%d: %w", HostCID, cfg.VsockPort, err)
		}
		return c, nil
	case TransportSerial:
		f, err := openVirtioPort("/sys/class/virtio-ports", "/dev", agent.AgentPortName, portWaitTimeout)
		if err != nil {
			return nil, fmt.Errorf("connect to host: %w", err)
		}
		return f, nil
	default:
		return nil, fmt.Errorf("connect to host: unknown transport %q", cfg.Transport)
	}
}

// openVirtioPort opens the virtio-serial port called name. Ports and their
// names arrive asynchronously after virtio_console loads (the host announces
// them on the control queue), so it polls sysfs until timeout. Without udev
// there is no /dev/virtio-ports/NAME, and devtmpfs may lag behind sysfs, so
// the node is made from sysfs's dev numbers when missing.
func openVirtioPort(sysDir, devDir, name string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	var port string
	for {
		var err error
		port, err = findVirtioPort(sysDir, name)
		if err != nil {
			return nil, err
		}
		if port != "" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("virtio-serial port %s: none under %s after %s (is the virtserialport device on the QEMU command line?)", name, sysDir, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	node := filepath.Join(devDir, port)
	if _, err := os.Stat(node); errors.Is(err, os.ErrNotExist) {
		devNum, err := os.ReadFile(filepath.Join(sysDir, port, "dev"))
		if err != nil {
			return nil, fmt.Errorf("virtio-serial port %s: %w", name, err)
		}
		major, minor, err := parseDevNum(string(devNum))
		if err != nil {
			return nil, fmt.Errorf("virtio-serial port %s: %w", name, err)
		}
		if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("virtio-serial port %s: mknod %s: %w", name, node, err)
		}
	}
	f, err := os.OpenFile(node, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio-serial port %s: %w", name, err)
	}
	return f, nil
}

// findVirtioPort returns the port directory name (vportNpM) under sysDir
// whose name file holds name, or "" when there is none yet.
func findVirtioPort(sysDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("virtio-serial port %s: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // port without a name, or gone
		}
		if strings.TrimSpace(string(b)) == name {
			return e.Name(), nil
		}
	}
	return "", nil
}

// parseDevNum parses a sysfs dev file ("MAJOR:MINOR\n").
func parseDevNum(s string) (major, minor uint32, err error) {
	ma, mi, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, fmt.Errorf("parse device number %q: want MAJOR:MINOR", s)
	}
	a, err1 := strconv.ParseUint(ma, 10, 32)
	b, err2 := strconv.ParseUint(mi, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse device number %q: %w", s, err)
	}
	return uint32(a), uint32(b), nil
}
