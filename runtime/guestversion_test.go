package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The agent's version is found in the initramfs the Makefile builds.
func TestAgentVersion(t *testing.T) {
	initrd := filepath.Join("..", "build", "guest", "initrd.img")
	if _, err := os.Stat(initrd); err != nil {
		t.Skip("skipping: no guest image (run make)")
	}
	v, err := AgentVersion(initrd)
	if err != nil || v == "" || v == "unknown" || strings.ContainsAny(v, " \n") {
		t.Fatalf("AgentVersion: %q, %v", v, err)
	}
	if _, err := AgentVersion("guestversion.go"); err == nil {
		t.Error("a file that is no cpio archive must be an error")
	}
}
