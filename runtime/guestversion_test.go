package runtime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runvirt/runvirt/internal/testutil"
)

// newcArchive is a newc cpio archive of the given files (name, contents),
// with its trailer, padded to 512 bytes as the kernel's tools pad them.
func newcArchive(files ...string) []byte {
	var b bytes.Buffer
	entry := func(name, data string, mode int) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for i := 0; i+1 < len(files); i += 2 {
		entry(files[i], files[i+1], 0o100644)
	}
	entry("TRAILER!!!", "", 0)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

// The agent's version is found in an initramfs of several archives one
// after the other (as guest-image/build.sh writes it), with or without a
// leading "./"; anything else is an error, never a made-up version.
func TestAgentVersion(t *testing.T) {
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	img := append(newcArchive("init", "#!/bin/sh\n", "etc/runvirt/modules", ""),
		newcArchive("./etc/runvirt/agent.version", "v1.2-3-gabcdef\n")...)
	if err := os.WriteFile(initrd, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := AgentVersion(initrd); err != nil || v != "v1.2-3-gabcdef" {
		t.Errorf("AgentVersion = %q, %v; want v1.2-3-gabcdef", v, err)
	}

	noVersion := filepath.Join(dir, "noversion.img")
	os.WriteFile(noVersion, newcArchive("init", "x"), 0o644)
	if v, err := AgentVersion(noVersion); err == nil || !strings.Contains(err.Error(), "agent.version") {
		t.Errorf("an initramfs without the version file: %q, %v; want an error naming it", v, err)
	}
	if _, err := AgentVersion("guestversion.go"); err == nil {
		t.Error("a file that is no cpio archive must be an error")
	}
	bad := filepath.Join(dir, "bad.img")
	os.WriteFile(bad, []byte("070701"+strings.Repeat("Z", 104)), 0o644)
	if _, err := AgentVersion(bad); err == nil {
		t.Error("a bad header must be an error")
	}

	// The image `make` built, when there is one.
	if _, built := testutil.GuestImage(testutil.GuestDir("..")); fileExists(built) {
		v, err := AgentVersion(built)
		if err != nil || v == "" || v == "unknown" || strings.ContainsAny(v, " \n") {
			t.Errorf("AgentVersion(%s): %q, %v", built, v, err)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
