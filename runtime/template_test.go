package runtime

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runvirt/runvirt/agent"
)

func templateConfig(t *testing.T) SandboxConfig {
	dir := t.TempDir()
	for _, f := range []string{"qemu", "vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return SandboxConfig{
		QEMU: filepath.Join(dir, "qemu"), Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd"),
		Machine: "microvm", Accel: "tcg", VCPUs: 1, MemoryMiB: 256, SharedFS: "9p", Transport: "serial",
		TemplateDir: filepath.Join(dir, "templates"),
	}
}

func TestTemplateUnfit(t *testing.T) {
	cfg := templateConfig(t)
	if why := templateUnfit(cfg); why != "" {
		t.Errorf("9p, serial: unfit (%s)", why)
	}
	off := cfg
	off.TemplateDir = ""
	if templateUnfit(off) == "" {
		t.Error("templates off, yet fit")
	}
	vfs := cfg
	vfs.SharedFS = "virtio-fs"
	if templateUnfit(vfs) == "" {
		t.Error("virtio-fs, yet fit")
	}
}

// A copy's NICs start with the template's MACs; the wake maps them, in
// device order, to the sandbox's.
func TestWakeMACs(t *testing.T) {
	if m := wakeMACs(nil); len(m) != 0 {
		t.Errorf("no network, macs %v", m)
	}
	n := &SandboxNetwork{Interfaces: []TapLink{
		{Guest: agent.Interface{MAC: "02:42:ac:11:00:02"}},
		{Guest: agent.Interface{MAC: "ae:00:00:00:00:01"}},
	}}
	want := []agent.MACChange{{From: "02:72:76:74:00:00", To: "02:42:ac:11:00:02"}, {From: "02:72:76:74:00:01", To: "ae:00:00:00:00:01"}}
	if got := wakeMACs(n); !reflect.DeepEqual(got, want) {
		t.Errorf("wake macs %v, want %v", got, want)
	}
	if templateMAC(300) != "02:72:76:74:01:2c" {
		t.Errorf("templateMAC(300) = %s", templateMAC(300))
	}
}

// The key changes with whatever changes the VM, and only then.
func TestTemplateKey(t *testing.T) {
	cfg := templateConfig(t)
	k1, err := templateKey(cfg, baseVM(Dir{}, cfg), 1)
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := templateKey(cfg, baseVM(Dir{}, cfg), 1); k2 != k1 {
		t.Errorf("same configuration, keys %s and %s", k1, k2)
	}
	if k2, _ := templateKey(cfg, baseVM(Dir{}, cfg), 2); k2 == k1 {
		t.Error("two NICs, the key of one")
	}
	for name, change := range map[string]func(*SandboxConfig){
		"memory":        func(c *SandboxConfig) { c.MemoryMiB = 512 },
		"vcpus":         func(c *SandboxConfig) { c.VCPUs = 2 },
		"machine":       func(c *SandboxConfig) { c.Machine = "q35" },
		"kernel params": func(c *SandboxConfig) { c.KernelParams = "quiet" },
		"debug":         func(c *SandboxConfig) { c.Debug = true },
		"new kernel": func(c *SandboxConfig) {
			if err := os.WriteFile(c.Kernel, []byte("a newer kernel"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	} {
		c := templateConfig(t)
		c.QEMU, c.Kernel, c.Initrd = cfg.QEMU, cfg.Kernel, cfg.Initrd
		base, _ := templateKey(c, baseVM(Dir{}, c), 1)
		change(&c)
		k, err := templateKey(c, baseVM(Dir{}, c), 1)
		if err != nil {
			t.Fatal(err)
		}
		if k == base {
			t.Errorf("%s changed, key did not", name)
		}
	}
	os.Remove(cfg.Initrd)
	if _, err := templateKey(cfg, baseVM(Dir{}, cfg), 1); err == nil {
		t.Error("no error for a missing initrd")
	}
}

// A template that cannot be made is not tried by every sandbox: the failure
// is kept beside the template, and the template tried again only once it
// is old (or removed).
func TestTemplateFailureIsRemembered(t *testing.T) {
	cfg := templateConfig(t) // its "qemu" is no program: the template VM cannot start
	cfg.BootTimeout = 5 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err := ensureTemplate(cfg, baseVM(Dir{}, cfg), 0, log)
	if err == nil || !strings.Contains(err.Error(), "start qemu") {
		t.Fatalf("first try: error %v, want the failed qemu start", err)
	}
	key, _ := templateKey(cfg, baseVM(Dir{}, cfg), 0)
	marker := filepath.Join(cfg.TemplateDir, key+".failed")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no failure marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.TemplateDir, key)); err == nil {
		t.Error("the half-made template is still there")
	}
	_, err = ensureTemplate(cfg, baseVM(Dir{}, cfg), 0, log)
	if err == nil || !strings.Contains(err.Error(), "tried again") || !strings.Contains(err.Error(), marker) {
		t.Errorf("second try: error %v, want the earlier failure and the marker to remove", err)
	}
	// Once the marker is old, the template is tried again (and fails again).
	old := time.Now().Add(-templateRetryAfter - time.Minute)
	os.Chtimes(marker, old, old)
	_, err = ensureTemplate(cfg, baseVM(Dir{}, cfg), 0, log)
	if err == nil || !strings.Contains(err.Error(), "start qemu") {
		t.Errorf("after %s: error %v, want a new try", templateRetryAfter, err)
	}
	if fi, err := os.Stat(marker); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("the new failure did not renew the marker: %v", err)
	}
	if templateFor(cfg, baseVM(Dir{}, cfg), nil, log) != nil {
		t.Error("templateFor handed out a template that does not exist")
	}
}
