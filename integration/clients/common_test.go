package clients

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// clientSetup runs a client's setup script (which installs and starts the
// client) once per test binary and keeps the socket path it prints last.
type clientSetup struct {
	script string // below integration/clients
	once   sync.Once
	sock   string
	err    string // why the client could not be set up
}

// require skips (or, with RUNVIRT_REQUIRE_INTEGRATION=1 as in CI, fails)
// unless VMs can be booted here and the client is up; it returns the
// client's socket.
func (s *clientSetup) require(t *testing.T) string {
	t.Helper()
	missing := vmPrerequisiteMissing()
	if missing == "" {
		s.once.Do(func() {
			cmd := exec.Command(filepath.Join(ctrdRepo(), "integration", "clients", s.script))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				s.err = fmt.Sprintf("%s: %v: %s", s.script, err, strings.TrimSpace(stderr.String()))
				return
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			s.sock = lines[len(lines)-1]
		})
		missing = s.err
	}
	if missing == "" {
		return s.sock
	}
	if os.Getenv("RUNVIRT_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration prerequisite missing: %s", missing)
	}
	t.Skipf("skipping: %s", missing)
	return ""
}

// vmPrerequisiteMissing says what this host lacks to boot runvirt VMs, or "".
func vmPrerequisiteMissing() string {
	switch {
	case os.Geteuid() != 0:
		return "not root (run: sudo make integration)"
	case !ctrdExists(ctrdRunvirt()):
		return ctrdRunvirt() + " is missing (run: make)"
	case !ctrdExists(filepath.Join(ctrdRepo(), "build", "guest", "initrd.img")):
		return "the guest image is missing (run: make)"
	case !ctrdInPath("qemu-system-x86_64"):
		return "qemu-system-x86_64 is not installed (run: make deps)"
	case !ctrdExists("/bin/busybox"):
		return "busybox-static is not installed (run: make deps)"
	}
	return ""
}
