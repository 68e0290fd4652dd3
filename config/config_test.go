package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Machine != "microvm" || c.Accel != "auto" || c.SharedFS != "virtio-fs" || c.Transport != "auto" || c.MemoryMiB != 256 || c.VCPUs != 1 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestParseValues(t *testing.T) {
	c, err := Parse(`
qemu = "/opt/qemu"
machine = "microvm"
vcpus = 2
memory_mib = 512
accel = "tcg"
shared_fs = "9p"
transport = "serial"
boot_timeout = "15s"
kernel_params = "foo=bar"
debug = true
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.QEMU != "/opt/qemu" || c.Machine != "microvm" || c.VCPUs != 2 || c.MemoryMiB != 512 ||
		c.Accel != "tcg" || c.SharedFS != "9p" || c.Transport != "serial" ||
		c.BootTimeout.Duration != 15*time.Second || c.KernelParams != "foo=bar" || !c.Debug {
		t.Fatalf("values not applied: %+v", c)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, key string }{
		{`mashine = "q35"`, "mashine"},
		{`machine = "pc"`, "machine"},
		{`accel = "hvf"`, "accel"},
		{`shared_fs = "nfs"`, "shared_fs"},
		{`transport = "tcp"`, "transport"},
		{`vcpus = 0`, "vcpus"},
		{`memory_mib = 8`, "memory_mib"},
		{`boot_timeout = "soon"`, "boot_timeout"},
		{`boot_timeout = "-1s"`, "boot_timeout"},
		{`qemu = ""`, "qemu"},
		{`kernel_params = "runvirt.share=9p"`, "kernel_params"},
		{"[vm]\nmemory = 3", "vm"},
	} {
		_, err := Parse(tc.text)
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %q does not name %q", tc.text, err, tc.key)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	dir := t.TempDir()
	flagFile := filepath.Join(dir, "flag.toml")
	envFile := filepath.Join(dir, "env.toml")
	os.WriteFile(flagFile, []byte(`vcpus = 3`), 0o644)
	os.WriteFile(envFile, []byte(`vcpus = 4`), 0o644)

	t.Setenv(EnvVar, envFile)
	c, err := Load(flagFile)
	if err != nil || c.VCPUs != 3 || c.Source != flagFile {
		t.Fatalf("flag should win: %+v %v", c, err)
	}
	c, err = Load("")
	if err != nil || c.VCPUs != 4 || c.Source != envFile {
		t.Fatalf("env should be used: %+v %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Fatal("a missing file named by --config must be an error")
	}
	t.Setenv(EnvVar, filepath.Join(dir, "missing.toml"))
	if _, err := Load(""); err == nil {
		t.Fatal("a missing file named by the environment must be an error")
	}
}

// The example file documents every key and must parse as it is.
func TestExampleParses(t *testing.T) {
	b, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(string(b)); err != nil {
		t.Fatalf("config.toml.example: %v", err)
	}
	for _, key := range []string{"qemu", "virtiofsd", "kernel", "initrd", "machine", "vcpus", "memory_mib", "accel", "shared_fs", "transport", "kernel_params", "boot_timeout", "debug", "late_network", "debug_shell"} {
		if !strings.Contains(string(b), key+" =") {
			t.Errorf("config.toml.example does not document %s", key)
		}
	}
}
