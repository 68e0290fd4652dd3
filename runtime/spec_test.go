package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWriteSpecLoads(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSpec(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatalf("the generated spec does not load: %v", err)
	}
	s := b.Spec
	if s.Version != specs.Version || s.Hostname != "runvirt" || !s.Root.Readonly || !s.Process.Terminal ||
		!slices.Equal(s.Process.Args, []string{"sh"}) || !s.Process.NoNewPrivileges {
		t.Errorf("spec = %+v", s)
	}
	if got := len(s.Mounts); got != 7 {
		t.Errorf("%d mounts, want runc's 7", got)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	if !slices.Equal(ns, []specs.LinuxNamespaceType{"pid", "network", "ipc", "uts", "mount"}) {
		t.Errorf("namespaces = %v", ns)
	}

	// Never overwrite, with runc's message.
	err = WriteSpec(dir, true)
	if !errors.Is(err, ErrSpecExists) || err.Error() != "File config.json exists. Remove it first" {
		t.Errorf("second WriteSpec = %v", err)
	}
}

// runc spec writes tab-indented JSON with no trailing newline.
func TestWriteSpecFormat(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSpec(dir, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "{\n\t\"ociVersion\": ") || strings.HasSuffix(string(b), "\n") {
		t.Errorf("config.json starts %q, ends %q", b[:20], b[len(b)-5:])
	}
}

func TestRootlessSpec(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSpec(dir, true); err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	l := s.Linux
	if len(l.UIDMappings) != 1 || l.UIDMappings[0].HostID != uint32(os.Geteuid()) || l.UIDMappings[0].Size != 1 ||
		len(l.GIDMappings) != 1 || l.GIDMappings[0].HostID != uint32(os.Getegid()) {
		t.Errorf("mappings = %+v %+v", l.UIDMappings, l.GIDMappings)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range l.Namespaces {
		ns = append(ns, n.Type)
	}
	if !slices.Equal(ns, []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "user"}) {
		t.Errorf("namespaces = %v, want no network and a user namespace", ns)
	}
	if l.Resources != nil {
		t.Errorf("resources = %+v, want none", l.Resources)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && (m.Type != "none" || m.Source != "/sys" || !slices.Contains(m.Options, "rbind")) {
			t.Errorf("/sys = %+v, want a bind of the host's /sys", m)
		}
		for _, o := range m.Options {
			if strings.HasPrefix(o, "gid=") {
				t.Errorf("%s keeps %s", m.Destination, o)
			}
		}
	}
}
