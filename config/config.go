// Package config loads runvirt's TOML configuration.
//
// Lookup order: the --config flag, then $RUNVIRT_CONFIG, then
// /etc/runvirt/config.toml, then built-in defaults. A file named by the flag
// or the variable must exist; the system file may be absent. Unknown keys and
// bad values are errors that name the key, so a typo never silently falls
// back to a default.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// SystemPath is the configuration file read when neither the flag nor the
// environment names one.
const SystemPath = "/etc/runvirt/config.toml"

// EnvVar names the environment variable that points at a configuration file.
const EnvVar = "RUNVIRT_CONFIG"

// DataDir is where `make install` puts the guest kernel and initramfs.
const DataDir = "/usr/share/runvirt"

// Config is runvirt's configuration. The TOML keys are the field tags;
// config.toml.example documents each one.
type Config struct {
	QEMU      string `toml:"qemu"`
	Virtiofsd string `toml:"virtiofsd"`
	Kernel    string `toml:"kernel"`
	Initrd    string `toml:"initrd"`
	Machine   string `toml:"machine"`
	VCPUs     int    `toml:"vcpus"`
	MemoryMiB int    `toml:"memory_mib"`
	// MaxMemoryMiB bounds the VM a container's memory limit may grow a
	// sandbox to: the guest kernel maps all of its RAM at boot, which
	// costs the host memory at once however little the workload uses.
	MaxMemoryMiB int      `toml:"max_memory_mib"`
	Accel        string   `toml:"accel"`
	SharedFS     string   `toml:"shared_fs"`
	Transport    string   `toml:"transport"`
	KernelParams string   `toml:"kernel_params"`
	BootTimeout  Duration `toml:"boot_timeout"`
	Debug        bool     `toml:"debug"`
	// DebugShell lets `runvirt debug-shell` start a shell in the guest VM of
	// sandboxes created while it is on (the host's static busybox is shared
	// into them for it).
	DebugShell bool `toml:"debug_shell"`
	// LateNetwork gives a VM whose network namespace is new (and may be
	// filled after boot, as docker does) a spare NIC for it.
	LateNetwork bool `toml:"late_network"`
	// QEMUUser is who QEMU runs as: "sandbox" (a uid and gid of its own
	// per sandbox, from QEMUUIDRange), a user name or "uid:gid" (every
	// QEMU as that one user), or "root".
	QEMUUser string `toml:"qemu_user"`
	// QEMUUIDRange is the "FIRST-LAST" range of ids qemu_user = "sandbox"
	// leases from: ids no user or file of the host has.
	QEMUUIDRange string `toml:"qemu_uid_range"`
	// Template starts sandboxes from a saved, booted VM instead of booting
	// each one (docs/design-templates.md); it needs shared_fs = "9p" and
	// the serial transport.
	Template bool `toml:"template"`
	// TemplateDir holds the saved template VMs, their RAM included: a
	// tmpfs, so that the copies share the template's pages.
	TemplateDir string `toml:"template_dir"`
	// ConsoleLogKiB caps the guest console's log: the guest writes it at
	// will, so it is rotated once at this size (at most twice it is kept).
	ConsoleLogKiB int `toml:"console_log_kib"`
	// HelperMemoryMiB is the hard memory limit of each sandbox's host-side
	// helpers (the monitor and virtiofsd), a memory cgroup of their own; 0
	// runs them without one.
	HelperMemoryMiB int `toml:"helper_memory_mib"`

	// Source is the file the configuration came from, or "" for defaults.
	Source string `toml:"-"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		QEMU:      "qemu-system-x86_64",
		Virtiofsd: "/usr/lib/qemu/virtiofsd",
		Kernel:    DataDir + "/vmlinux",
		Initrd:    DataDir + "/initrd.img",
		Machine:   "microvm",
		VCPUs:     1,
		MemoryMiB: 256,
		// The guest's page structures for 8 GiB cost ~130 MiB of host
		// memory at boot (see config.toml.example).
		MaxMemoryMiB: 8192,
		Accel:        "auto",
		SharedFS:     "virtio-fs",
		Transport:    "auto",
		LateNetwork:  true,
		BootTimeout:  Duration{60 * time.Second},
		QEMUUser:     "sandbox",
		// 0x70000000 + 64 Ki: above the container ranges systemd-nspawn
		// and /etc/subuid hand out.
		QEMUUIDRange:    "1879048192-1879113727",
		TemplateDir:     "/run/runvirt-templates",
		ConsoleLogKiB:   1024,
		HelperMemoryMiB: 256,
	}
}

// Load finds and reads the configuration. flagPath is the value of
// --config ("" when not given).
func Load(flagPath string) (*Config, error) {
	path, required := flagPath, true
	if path == "" {
		path = os.Getenv(EnvVar)
	}
	if path == "" {
		path, required = SystemPath, false
	}
	c, err := LoadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return Default(), nil
	}
	return c, err
}

// LoadFile reads one configuration file over the defaults.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Source = path
	return c, nil
}

// Parse decodes TOML text over the defaults and validates the result.
func Parse(text string) (*Config, error) {
	c := Default()
	md, err := toml.Decode(text, c)
	if err != nil {
		return nil, err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	oneOf := func(key, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
	}
	for _, chk := range []error{
		nonEmpty("qemu", c.QEMU),
		nonEmpty("kernel", c.Kernel),
		nonEmpty("initrd", c.Initrd),
		oneOf("machine", c.Machine, "q35", "microvm"),
		oneOf("accel", c.Accel, "auto", "kvm", "tcg"),
		oneOf("shared_fs", c.SharedFS, "virtio-fs", "9p"),
		oneOf("transport", c.Transport, "auto", "vsock", "serial"),
	} {
		if chk != nil {
			return chk
		}
	}
	if c.SharedFS == "virtio-fs" && c.Virtiofsd == "" {
		return errors.New("virtiofsd: must be set when shared_fs is virtio-fs")
	}
	if c.VCPUs < 1 || c.VCPUs > 255 {
		return fmt.Errorf("vcpus: %d is out of range 1-255", c.VCPUs)
	}
	if c.MemoryMiB < 64 || c.MemoryMiB > 1<<20 {
		return fmt.Errorf("memory_mib: %d is out of range 64-1048576", c.MemoryMiB)
	}
	if c.MaxMemoryMiB < c.MemoryMiB || c.MaxMemoryMiB > 1<<20 {
		return fmt.Errorf("max_memory_mib: %d is out of range %d (memory_mib)-1048576", c.MaxMemoryMiB, c.MemoryMiB)
	}
	if c.ConsoleLogKiB < 4 || c.ConsoleLogKiB > 1<<20 {
		return fmt.Errorf("console_log_kib: %d is out of range 4-1048576", c.ConsoleLogKiB)
	}
	if c.HelperMemoryMiB != 0 && (c.HelperMemoryMiB < 64 || c.HelperMemoryMiB > 1<<20) {
		return fmt.Errorf("helper_memory_mib: %d is out of range 64-1048576 (or 0 for no limit)", c.HelperMemoryMiB)
	}
	if c.BootTimeout.Duration <= 0 {
		return fmt.Errorf("boot_timeout: %s must be positive", c.BootTimeout)
	}
	if err := validateQEMUUser(c.QEMUUser); err != nil {
		return fmt.Errorf("qemu_user: %w", err)
	}
	if _, _, err := ParseIDRange(c.QEMUUIDRange); err != nil {
		return fmt.Errorf("qemu_uid_range: %w", err)
	}
	if c.Template {
		switch {
		case c.SharedFS != "9p":
			return fmt.Errorf("template: needs shared_fs = \"9p\" (QEMU cannot save a VM with a virtio-fs device, and a template's copies keep their RAM private, which virtiofsd cannot map)")
		case c.Transport == "vsock":
			return fmt.Errorf("template: needs transport = \"serial\" or \"auto\" (a vsock device's guest CID is saved with the VM)")
		case !filepath.IsAbs(c.TemplateDir):
			return fmt.Errorf("template_dir: %q is not an absolute path", c.TemplateDir)
		}
	}
	if strings.Contains(c.KernelParams, "runvirt.") {
		return errors.New("kernel_params: runvirt.* keys are set by runvirt itself")
	}
	return nil
}

func nonEmpty(key, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("%s: must not be empty", key)
	}
	return nil
}

// validateQEMUUser checks the form of qemu_user; a name is looked up when
// a sandbox is created (runtime.Resolve).
func validateQEMUUser(v string) error {
	switch {
	case v == "sandbox" || v == "root":
		return nil
	case strings.Contains(v, ":"):
		_, _, err := ParseUIDGID(v)
		return err
	case v == "" || strings.ContainsAny(v, " \t/"):
		return fmt.Errorf("%q is not \"sandbox\", \"root\", a user name or uid:gid", v)
	}
	return nil
}

// ParseUIDGID parses "uid:gid" (decimal ids).
func ParseUIDGID(v string) (uid, gid uint32, err error) {
	u, g, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not uid:gid", v)
	}
	if uid, err = parseID(u); err == nil {
		gid, err = parseID(g)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", v, err)
	}
	return uid, gid, nil
}

// ParseIDRange parses "FIRST-LAST": ids from 1 (never root's 0) to
// 4294967294 (2^32-1 is the kernel's "no id").
func ParseIDRange(v string) (first, last uint32, err error) {
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not FIRST-LAST", v)
	}
	if first, err = parseID(a); err == nil {
		last, err = parseID(b)
	}
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("%q: %w", v, err)
	case first == 0:
		return 0, 0, fmt.Errorf("%q includes 0 (root)", v)
	case last < first:
		return 0, 0, fmt.Errorf("%q: last is below first", v)
	}
	return first, last, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, fmt.Errorf("%q is not an id from 0 to 4294967294", s)
	}
	return uint32(n), nil
}
