package config

import (
	"os"
	"path/filepath"
	"reflect"
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
		{"memory_mib = 1024\nmax_memory_mib = 512", "max_memory_mib"},
		{`max_memory_mib = 2000000`, "max_memory_mib"},
		{`console_log_kib = 0`, "console_log_kib"},
		{`helper_memory_mib = 16`, "helper_memory_mib"},
		{`helper_memory_mib = -1`, "helper_memory_mib"},
		{`console_log_kib = 2000000`, "console_log_kib"},
		{`boot_timeout = "soon"`, "boot_timeout"},
		{`boot_timeout = "-1s"`, "boot_timeout"},
		{`qemu = ""`, "qemu"},
		{`kernel_params = "runvirt.share=9p"`, "kernel_params"},
		{"[vm]\nmemory = 3", "vm"},
		{`qemu_user = ""`, "qemu_user"},
		{`qemu_user = "a b"`, "qemu_user"},
		{`qemu_user = "1000:"`, "qemu_user"},
		{`qemu_user = "1000:x"`, "qemu_user"},
		{`qemu_user = "4294967295:1"`, "qemu_user"},
		{`qemu_uid_range = "100"`, "qemu_uid_range"},
		{`qemu_uid_range = "0-100"`, "qemu_uid_range"},
		{`qemu_uid_range = "200-100"`, "qemu_uid_range"},
		{`qemu_uid_range = "1-4294967295"`, "qemu_uid_range"},
		{`qemu_uid_range = "-1-5"`, "qemu_uid_range"},
		{`template = true`, "template"}, // virtio-fs, the default
		{"template = true\nshared_fs = \"9p\"\ntransport = \"vsock\"", "template"},
		{"template = true\nshared_fs = \"9p\"\ntemplate_dir = \"templates\"", "template_dir"},
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

// The example file documents every key, with its default value, and must
// parse as it is.
func TestExampleParses(t *testing.T) {
	b, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(string(b))
	if err != nil {
		t.Fatalf("config.toml.example: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("config.toml.example's values are not the defaults:\n%+v\n%+v", c, Default())
	}
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		key := ct.Field(i).Tag.Get("toml")
		if key == "-" {
			continue
		}
		if !strings.Contains(string(b), "\n"+key+" =") {
			t.Errorf("config.toml.example does not document %s", key)
		}
	}
}

func TestQEMUUser(t *testing.T) {
	for _, v := range []string{"sandbox", "root", "nobody", "1000:1000", "0:0"} {
		if _, err := Parse("qemu_user = \"" + v + "\""); err != nil {
			t.Errorf("qemu_user = %q: %v", v, err)
		}
	}
	c, err := Parse(`qemu_uid_range = "5-5"`)
	if err != nil {
		t.Fatal(err)
	}
	if a, b, err := ParseIDRange(c.QEMUUIDRange); err != nil || a != 5 || b != 5 {
		t.Errorf("range 5-5: %d %d %v", a, b, err)
	}
	if u, g, err := ParseUIDGID("7:8"); err != nil || u != 7 || g != 8 {
		t.Errorf("7:8: %d %d %v", u, g, err)
	}
}

func TestTemplateNeeds9p(t *testing.T) {
	c, err := Parse("template = true\nshared_fs = \"9p\"")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Template || c.TemplateDir != "/run/runvirt-templates" {
		t.Errorf("template %v in %q, want true in /run/runvirt-templates", c.Template, c.TemplateDir)
	}
	_, err = Parse("template = true")
	if err == nil || !strings.Contains(err.Error(), `shared_fs = "9p"`) {
		t.Errorf("template with virtio-fs: error %v, want one asking for 9p", err)
	}
}
