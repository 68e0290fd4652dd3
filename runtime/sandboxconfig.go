package runtime

import (
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/config"
	"github.com/runvirt/runvirt/hypervisor"
)

// SandboxConfig is the configuration with every "auto" resolved: what one
// sandbox's VM is started with. It is stored in the state so that later
// verbs and the monitor agree on it.
type SandboxConfig struct {
	QEMU         string        `json:"qemu"`
	Virtiofsd    string        `json:"virtiofsd,omitempty"`
	Kernel       string        `json:"kernel"`
	Initrd       string        `json:"initrd"`
	Machine      string        `json:"machine"`
	Accel        string        `json:"accel"`
	VCPUs        int           `json:"vcpus"`
	MemoryMiB    int           `json:"memory_mib"`
	MaxMemoryMiB int           `json:"max_memory_mib,omitempty"`
	LateNetwork  bool          `json:"late_network,omitempty"`
	DebugShell   bool          `json:"debug_shell,omitempty"`
	SharedFS     string        `json:"shared_fs"`
	Transport    string        `json:"transport"`
	KernelParams string        `json:"kernel_params,omitempty"`
	BootTimeout  time.Duration `json:"boot_timeout"`
	Debug        bool          `json:"debug,omitempty"`
	// QEMUUser is who QEMU runs as: "sandbox" (a uid and gid of its own,
	// leased from QEMUUIDs by the monitor), "uid:gid", or "" for root.
	QEMUUser string    `json:"qemu_user,omitempty"`
	QEMUUIDs [2]uint32 `json:"qemu_uids"`
	// TemplateDir, when set, is where the sandbox's VM is restored from a
	// saved template (made there first if missing): config `template`.
	TemplateDir string `json:"template_dir,omitempty"`
	// ConsoleLogKiB caps console.log (0, from an older runvirt: the
	// default).
	ConsoleLogKiB int `json:"console_log_kib,omitempty"`
	// HelperMemoryMiB limits the monitor's and virtiofsd's memory cgroup
	// (helpercgroup.go); 0: no cgroup.
	HelperMemoryMiB int `json:"helper_memory_mib,omitempty"`
}

// Host is what the host offers; detected once per process.
type Host struct {
	KVM   hypervisor.KVMStatus
	Vsock hypervisor.VsockStatus
}

// DetectHost probes KVM and vsock.
func DetectHost() Host {
	return Host{KVM: hypervisor.DetectKVM(), Vsock: hypervisor.DetectVsock()}
}

// Resolve turns the configuration into a SandboxConfig for this host.
// Warnings (such as falling back to TCG) are returned for the caller to log
// once.
func Resolve(c *config.Config, h Host) (SandboxConfig, []string, error) {
	var warns []string
	accel, warn, err := hypervisor.ChooseAccel(c.Accel, h.KVM)
	if err != nil {
		return SandboxConfig{}, nil, err
	}
	if warn != "" {
		warns = append(warns, warn)
	}
	transport := c.Transport
	switch transport {
	case "auto":
		transport = "serial"
		if h.Vsock.Usable && !c.Template {
			transport = "vsock"
		}
	case "vsock":
		if !h.Vsock.Usable {
			return SandboxConfig{}, nil, fmt.Errorf("transport vsock: %s", h.Vsock.Reason)
		}
	}
	qemu, err := exec.LookPath(c.QEMU)
	if err != nil {
		return SandboxConfig{}, nil, fmt.Errorf("qemu %q: %w (try: apt-get install qemu-system-x86)", c.QEMU, err)
	}
	for key, p := range map[string]string{"kernel": c.Kernel, "initrd": c.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return SandboxConfig{}, nil, fmt.Errorf("%s: %w (try: make install, or set %s in %s)", key, err, key, configName(c))
		}
	}
	sc := SandboxConfig{
		QEMU: qemu, Kernel: c.Kernel, Initrd: c.Initrd, Machine: c.Machine,
		Accel: accel, VCPUs: c.VCPUs, MemoryMiB: c.MemoryMiB, MaxMemoryMiB: c.MaxMemoryMiB,
		SharedFS: c.SharedFS, Transport: transport, KernelParams: c.KernelParams,
		BootTimeout: c.BootTimeout.Duration, Debug: c.Debug, LateNetwork: c.LateNetwork,
		DebugShell: c.DebugShell, ConsoleLogKiB: c.ConsoleLogKiB, HelperMemoryMiB: c.HelperMemoryMiB,
	}
	if c.Template {
		sc.TemplateDir = c.TemplateDir
	}
	if sc.QEMUUser, sc.QEMUUIDs, err = resolveQEMUUser(c); err != nil {
		return SandboxConfig{}, nil, err
	}
	if c.SharedFS == "virtio-fs" {
		if _, err := os.Stat(c.Virtiofsd); err != nil {
			return SandboxConfig{}, nil, fmt.Errorf("virtiofsd: %w (try: apt-get install qemu-system-x86, or set shared_fs = \"9p\")", err)
		}
		sc.Virtiofsd = c.Virtiofsd
	}
	return sc, warns, nil
}

// resolveQEMUUser turns qemu_user into SandboxConfig.QEMUUser: a name is
// looked up now, and root is "". 9p keeps QEMU root: its server opens the
// share's files as their owners (the monitor logs why).
func resolveQEMUUser(c *config.Config) (user string, ids [2]uint32, err error) {
	switch {
	case c.QEMUUser == "root" || c.SharedFS == "9p":
		return "", ids, nil
	case c.QEMUUser == "sandbox":
		first, last, err := config.ParseIDRange(c.QEMUUIDRange)
		if err != nil {
			return "", ids, fmt.Errorf("qemu_uid_range: %w", err)
		}
		return "sandbox", [2]uint32{first, last}, nil
	}
	uid, gid, err := config.ParseUIDGID(c.QEMUUser)
	if err != nil {
		u, lerr := osuser.Lookup(c.QEMUUser)
		if lerr != nil {
			return "", ids, fmt.Errorf("qemu_user: %w (set it in %s)", lerr, configName(c))
		}
		if uid, gid, err = config.ParseUIDGID(u.Uid + ":" + u.Gid); err != nil {
			return "", ids, fmt.Errorf("qemu_user %s: %w", c.QEMUUser, err)
		}
	}
	if uid == 0 {
		return "", ids, nil
	}
	return fmt.Sprintf("%d:%d", uid, gid), ids, nil
}

func configName(c *config.Config) string {
	if c.Source != "" {
		return c.Source
	}
	return config.SystemPath
}

// guestKernelMiB is what the guest kernel keeps of the VM's memory (its
// image, reserved memory, page tables): measured at ~50 MiB of 256.
const guestKernelMiB = 64

// SizeFor grows the VM to hold the container's own limits: a container
// limited to more memory than the configured VM has gets that much plus the
// guest kernel's share, and one allowed more CPUs (quota/period, or its
// cpuset) gets that many vCPUs, up to the host's. The configured size is
// the floor: a VM never shrinks below it.
func (sc SandboxConfig) SizeFor(spec *specs.Spec, hostCPUs int) SandboxConfig {
	if spec == nil || spec.Linux == nil || spec.Linux.Resources == nil {
		return sc
	}
	r := spec.Linux.Resources
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		need := int((*m.Limit+(1<<20)-1)>>20) + guestKernelMiB
		sc.MemoryMiB = max(sc.MemoryMiB, need)
	}
	if c := r.CPU; c != nil {
		want := 0
		if c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
			want = int((uint64(*c.Quota) + *c.Period - 1) / *c.Period)
		}
		if n := cpusetSize(c.Cpus); n > 0 && (want == 0 || n < want) {
			want = n
		}
		if hostCPUs > 0 {
			want = min(want, hostCPUs)
		}
		sc.VCPUs = max(sc.VCPUs, want)
	}
	return sc
}

// checkSize refuses a VM that SizeFor grew past max_memory_mib, naming the
// container's limit, the key and the file that sets it (configFile). A
// memory limit is no reservation for runc; for a VM the guest kernel maps
// the whole of it at boot, so an unbounded limit would let one container
// take host memory at once.
func (sc SandboxConfig) checkSize(spec *specs.Spec, configFile string) error {
	if sc.MaxMemoryMiB <= 0 || sc.MemoryMiB <= sc.MaxMemoryMiB {
		return nil
	}
	limit := int64(0)
	if spec != nil && spec.Linux != nil && spec.Linux.Resources != nil && spec.Linux.Resources.Memory != nil && spec.Linux.Resources.Memory.Limit != nil {
		limit = *spec.Linux.Resources.Memory.Limit
	}
	return fmt.Errorf("linux.resources.memory.limit %d MiB needs a VM of %d MiB, above max_memory_mib = %d: lower the limit, or raise max_memory_mib in %s",
		limit>>20, sc.MemoryMiB, sc.MaxMemoryMiB, configFile)
}

// cpusetSize counts the CPUs of a cpuset list ("0-3,6"); 0 if empty or
// malformed.
func cpusetSize(s string) int {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}
