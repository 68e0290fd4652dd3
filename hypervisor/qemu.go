package hypervisor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/runvirt/runvirt/agent"
)

// VM describes one QEMU micro-VM. Paths are host paths.
type VM struct {
	ID        string
	QEMU      string
	Kernel    string
	Initrd    string
	Machine   string // q35 | microvm
	Accel     string // kvm | tcg
	VCPUs     int
	MemoryMiB int

	SharedFS string // virtio-fs | 9p
	ShareDir string // 9p: the directory QEMU exports
	// Virtiofsd (virtio-fs) is a connection to virtiofsd's vhost-user
	// socket, made by runvirt.
	Virtiofsd *os.File

	// Transport is "serial" or "vsock". For serial, AgentConn is QEMU's end
	// of a connected socket pair backing the virtio-serial port. For vsock,
	// VhostFD holds the reserved CID (see ReserveCID) and the agent dials the
	// host on VsockPort.
	Transport string
	AgentConn *os.File
	VhostFD   *os.File
	GuestCID  uint32
	VsockPort uint32

	// Nets are the guest's NICs, one virtio-net device each, in order.
	Nets []NetIface

	// QMP is the listening socket of QEMU's QMP monitor and Console where
	// the guest console goes, open for writing (a pipe to the monitor, or
	// a file); ConsoleLog is the log's path, only shown on QEMU's command
	// line. Like every file QEMU uses, they are
	// opened by runvirt and inherited: QEMU may run as a user that cannot
	// open them (they live in root's private directories).
	QMP        *os.File
	Console    *os.File
	ConsoleLog string

	// User, when set, is who QEMU runs as (see User); nil: root.
	User *User

	KernelParams string // extra, from the config
	Debug        bool
	// TSCkHz is the host's TSC frequency (0: unknown), which the guest
	// kernel is given on microvm; see HostTSCkHz.
	TSCkHz uint64

	// Template boots a template VM: the agent waits for the host's Wake
	// before it mounts the share (runvirt.template=1).
	Template bool
	// RAMFile backs the guest RAM with this file: mapped shared
	// (RAMShared, a template VM saving its RAM there) or privately (a copy
	// of the template: its writes stay its own).
	RAMFile   string
	RAMShared bool
	// Incoming, when set, is a saved template's state: QEMU starts with
	// -incoming defer, and IncomingURI names the file for QMP
	// migrate-incoming.
	Incoming   *os.File
	incomingFD int
}

// IncomingURI is the migration URI of Incoming, once Args has run.
func (vm *VM) IncomingURI() string { return fmt.Sprintf("fd:%d", vm.incomingFD) }

// NetIface is one guest NIC backed by a tap device QEMU inherits.
type NetIface struct {
	// Tap is an open /dev/net/tun attached to the tap (IFF_TAP|IFF_NO_PI,
	// with IFF_VNET_HDR so QEMU can offer the guest checksum and
	// segmentation offloads).
	Tap *os.File
	MAC string // the guest NIC's MAC: the host interface's it replaces
}

// HostTSCkHz returns the host's TSC frequency in kHz, or 0. Under TCG the
// guest's TSC runs at the host's rate.
func HostTSCkHz() uint64 {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return v
		}
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return uint64(mhz * 1000)
			}
		}
	}
	return 0
}

// fdTable hands out the fd numbers that files get in the child (ExtraFiles
// start at 3).
type fdTable struct{ files []*os.File }

func (t *fdTable) add(f *os.File) int {
	t.files = append(t.files, f)
	return 2 + len(t.files)
}

// virtioSuffix picks the device flavour: PCI on q35, MMIO on microvm.
func (vm *VM) device(name string) string {
	if vm.Machine == "microvm" {
		return name + "-device"
	}
	return name + "-pci"
}

// SandboxOption is QEMU's own seccomp filter: no obsolete syscalls, no
// setuid and friends, no fork/exec, no scheduler or affinity changes. A
// compromised QEMU keeps only what device emulation needs.
const SandboxOption = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// noROM keeps SeaBIOS from loading a PCI NIC's iPXE option ROM: the guest
// never network-boots, and the ROM costs boot time.
func (vm *VM) noROM() string {
	if vm.Machine == "microvm" {
		return ""
	}
	return ",romfile="
}

// Cmdline is the guest kernel command line.
func (vm *VM) Cmdline() string {
	p := []string{
		"console=ttyS0", "panic=-1", "quiet", "loglevel=3",
		// Skip probes that cost time under emulation and find nothing here.
		"i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
		"8250.nr_uarts=1", "cryptomgr.notests", "no_timer_check",
		"random.trust_cpu=on", "rcupdate.rcu_expedited=1",
		"tsc=reliable", "mitigations=off",
	}
	if vm.Machine == "microvm" {
		// microvm has no HPET or ACPI PM timer: TSC calibration against
		// the PIT fails at random under TCG and the kernel can hang, unless
		// it is told the frequency.
		p = append(p, "pci=off")
		if khz := vm.TSCkHz; khz > 0 {
			p = append(p, "tsc_early_khz="+strconv.FormatUint(khz, 10))
		}
	} else {
		p = append(p, "pci=lastbus=0")
	}
	p = append(p,
		"runvirt.transport="+vm.Transport,
		"runvirt.share="+vm.SharedFS,
	)
	if vm.Transport == "vsock" {
		p = append(p, "runvirt.vsock_port="+strconv.FormatUint(uint64(vm.VsockPort), 10))
	}
	if vm.Debug {
		p = append(p, "runvirt.debug=1")
	}
	if vm.Template {
		p = append(p, "runvirt.template=1")
	}
	if vm.KernelParams != "" {
		p = append(p, vm.KernelParams)
	}
	return strings.Join(p, " ")
}

// Args builds QEMU's command line and the files it must inherit.
func (vm *VM) Args() ([]string, []*os.File, error) {
	if err := vm.check(); err != nil {
		return nil, nil, err
	}
	var fds fdTable
	machine := vm.Machine + ",accel=" + vm.Accel
	a := []string{
		"-name", "runvirt-" + vm.ID,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", SandboxOption,
		"-m", strconv.Itoa(vm.MemoryMiB) + "M",
		"-smp", strconv.Itoa(vm.VCPUs),
		"-kernel", vm.Kernel,
		"-initrd", vm.Initrd,
		"-append", vm.Cmdline(),
		// The console goes through an fd set: a file chardev takes a path,
		// and /dev/fdset/N is one QEMU resolves to an inherited fd. It may
		// be a pipe: append keeps QEMU from truncating it (ftruncate fails
		// on a pipe).
		"-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", fds.add(vm.Console), consoleFDSet, qemuOptEscape(vm.ConsoleLog)),
		"-chardev", fmt.Sprintf("file,id=console,path=/dev/fdset/%d,append=on", consoleFDSet),
		"-serial", "chardev:console",
		"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d,server=on,wait=off", fds.add(vm.QMP)),
		"-mon", "chardev=qmp,mode=control",
		"-device", vm.device("virtio-rng"),
	}
	if vm.Accel == "kvm" {
		a = append(a, "-cpu", "host")
	}
	if vm.RAMFile != "" {
		share := "off"
		if vm.RAMShared {
			share = "on"
		}
		machine += ",memory-backend=mem"
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s",
			vm.MemoryMiB, qemuOptEscape(vm.RAMFile), share))
	}
	if vm.Incoming != nil {
		vm.incomingFD = fds.add(vm.Incoming)
		a = append(a, "-incoming", "defer")
	}
	switch vm.SharedFS {
	case "virtio-fs":
		// vhost-user needs the guest RAM in shared memory virtiofsd can map.
		machine += ",memory-backend=mem"
		a = append(a,
			"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", vm.MemoryMiB),
			"-chardev", fmt.Sprintf("socket,id=vfs,fd=%d", fds.add(vm.Virtiofsd)),
			"-device", vm.device("vhost-user-fs")+",chardev=vfs,tag="+agent.ShareTag+",queue-size=1024",
		)
		if vm.Machine == "microvm" {
			// virtiofsd refuses legacy virtio-mmio devices.
			a = append(a, "-global", "virtio-mmio.force-legacy=false")
		}
	case "9p":
		a = append(a,
			"-fsdev", "local,id=share,security_model=none,multidevs=remap,path="+vm.ShareDir,
			"-device", vm.device("virtio-9p")+",fsdev=share,mount_tag="+agent.ShareTag,
		)
	}
	switch vm.Transport {
	case "serial":
		a = append(a,
			// One port is the agent's; port 0 is reserved for a console.
			// The default, 31 ports, has the guest set up 64 virtqueues at
			// boot (~35 ms of virtio_console's probe under TCG, ~18 ms with 2).
			"-device", vm.device("virtio-serial")+",max_ports=2",
			"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", fds.add(vm.AgentConn)),
			"-device", "virtserialport,chardev=agent,name="+agent.AgentPortName,
		)
	case "vsock":
		a = append(a, "-device", fmt.Sprintf("%s,guest-cid=%d,vhostfd=%d",
			vm.device("vhost-vsock"), vm.GuestCID, fds.add(vm.VhostFD)))
	}
	for i, n := range vm.Nets {
		a = append(a,
			"-netdev", fmt.Sprintf("tap,id=net%d,fd=%d", i, fds.add(n.Tap)),
			"-device", fmt.Sprintf("%s,netdev=net%d,mac=%s%s", vm.device("virtio-net"), i, n.MAC, vm.noROM()),
		)
	}
	a = append([]string{"-machine", machine}, a...)
	return a, fds.files, nil
}

func (vm *VM) check() error {
	switch {
	case vm.Machine != "q35" && vm.Machine != "microvm":
		return fmt.Errorf("machine %q is not supported (q35, microvm)", vm.Machine)
	case vm.Accel != "kvm" && vm.Accel != "tcg":
		return fmt.Errorf("accel %q is not supported (kvm, tcg)", vm.Accel)
	case vm.RAMFile != "" && vm.SharedFS == "virtio-fs":
		return fmt.Errorf("a file for the guest RAM is for 9p only: virtio-fs keeps it in a memfd")
	case vm.Console == nil || vm.QMP == nil:
		return fmt.Errorf("qemu needs an open console log and qmp socket")
	case vm.SharedFS == "virtio-fs" && vm.Virtiofsd == nil:
		return fmt.Errorf("virtio-fs needs a connection to virtiofsd")
	case vm.SharedFS == "9p" && vm.User != nil:
		return fmt.Errorf("9p needs qemu to run as root")
	case vm.SharedFS == "9p" && vm.ShareDir == "":
		return fmt.Errorf("9p needs a share directory")
	case vm.SharedFS != "virtio-fs" && vm.SharedFS != "9p":
		return fmt.Errorf("shared fs %q is not supported (virtio-fs, 9p)", vm.SharedFS)
	case vm.Transport == "serial" && vm.AgentConn == nil:
		return fmt.Errorf("serial transport needs the agent socket")
	case vm.Transport == "vsock" && (vm.VhostFD == nil || vm.GuestCID < firstGuestCID || vm.VsockPort == 0):
		return fmt.Errorf("vsock transport needs a reserved cid and a port")
	case vm.Transport != "serial" && vm.Transport != "vsock":
		return fmt.Errorf("transport %q is not supported (serial, vsock)", vm.Transport)
	}
	for i, n := range vm.Nets {
		if n.Tap == nil {
			return fmt.Errorf("nic %d needs an open tap", i)
		}
		// The MAC goes into a QEMU option string: only a well-formed one.
		if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 || hw.String() != strings.ToLower(n.MAC) {
			return fmt.Errorf("nic %d: mac %q is not a 6-byte colon-separated mac", i, n.MAC)
		}
	}
	return nil
}

// Command returns the QEMU process, not yet started. QEMU gets SIGKILL if
// the process that starts it dies, so a killed monitor never leaves a VM
// running on its own. With vm.User set, QEMU starts as that user: it never
// runs as root at all (see User).
func (vm *VM) Command() (*exec.Cmd, error) {
	args, files, err := vm.Args()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(vm.QEMU, args...)
	cmd.ExtraFiles = files
	// Pdeathsig survives the drop: Go sets it after the credentials (a
	// change of credentials clears it), and QEMU is no setuid binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: vm.User.credential()}
	return cmd, nil
}
