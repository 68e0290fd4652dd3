package clients

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// clientSet is which releases of the clients the tests drive, and where
// each keeps what the tests look at. RUNVIRT_CLIENTS picks it: "debian"
// (the default: Debian 12's containerd 1.6 and docker 20.10 with their
// default paths) or "current" (today's containerd 2, docker engine 29 and
// nerdctl 2, as build-clients.sh builds them, with paths of their own so
// they run beside Debian's; see setup-containerd.sh and setup-docker.sh).
type clientSet struct {
	name string
	// containerdBin is the directory of containerd's binaries (ctr), or ""
	// for PATH.
	containerdBin string
	// The docker daemon's containerd socket, exec root (the runtimes'
	// state: EXEC_ROOT/runtime-NAME/moby/<id>), daemon.json and pid file.
	dockerContainerd, dockerExecRoot, dockerDaemonJSON, dockerPidFile string
	err                                                               string // why the set's containerd cannot be found
}

var (
	clientsOnce sync.Once
	clientsSet  *clientSet
)

// clients is the client set this test binary drives.
func clients() *clientSet {
	clientsOnce.Do(func() { clientsSet = pickClientSet(os.Getenv("RUNVIRT_CLIENTS")) })
	return clientsSet
}

func pickClientSet(name string) *clientSet {
	switch name {
	case "", "debian":
		return &clientSet{
			name:             "debian",
			dockerContainerd: "/run/containerd/containerd.sock",
			// dockerd's default exec root as a user's dockerd has it,
			// through the /var/run -> /run symlink.
			dockerExecRoot:   "/var/run/docker",
			dockerDaemonJSON: "/etc/docker/daemon.json",
			dockerPidFile:    "/var/run/docker.pid",
		}
	case "current":
		// setup-docker.sh's defaults for the current set.
		const state = "/run/runvirt-docker29"
		s := &clientSet{
			name:             "current",
			dockerContainerd: state + "/containerd/containerd.sock",
			dockerExecRoot:   state + "/exec",
			dockerDaemonJSON: state + "/daemon.json",
			dockerPidFile:    state + "/docker.pid",
		}
		var err error
		if s.containerdBin, err = builtBinDir("containerd"); err != nil {
			s.err = err.Error()
		}
		return s
	}
	return &clientSet{name: name, err: fmt.Sprintf("RUNVIRT_CLIENTS=%s: want debian or current", name)}
}

// builtBinDir asks build-clients.sh where it put client's binaries.
func builtBinDir(client string) (string, error) {
	cmd := exec.Command(filepath.Join(ctrdRepo(), "integration", "clients", "build-clients.sh"), "--bindir", client)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if msg := strings.TrimSpace(stderr.String()); err != nil && msg != "" {
		return "", errors.New(msg)
	} else if err != nil {
		return "", fmt.Errorf("build-clients.sh --bindir %s: %w", client, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// current reports whether the tests drive today's releases.
func (s *clientSet) current() bool { return s.name == "current" }

// ctrPath is the ctr that matches the set's containerd.
func (s *clientSet) ctrPath() string {
	if s.containerdBin == "" {
		return "ctr"
	}
	return filepath.Join(s.containerdBin, "ctr")
}

// skipUnlessDebian skips a test of what only Debian's releases have,
// saying why.
func skipUnlessDebian(t *testing.T, why string) {
	t.Helper()
	if clients().current() {
		t.Skipf("skipping with RUNVIRT_CLIENTS=current: %s", why)
	}
}
