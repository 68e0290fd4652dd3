package integration

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
)

// devicesScript makes a /dev/kmsg node (1:11, outside docker's list; a
// write-only open needs no privilege) and a node for the guest's first
// virtio-serial port (the agent's transport), and opens them and /dev/null.
const devicesScript = `mknod /dev/x c 1 11 && echo mknod-ok
echo hi 2>/dev/err > /dev/x && echo kmsg-opened; cat /dev/err
echo > /dev/null && echo null-ok
vp=$(cat /sys/class/virtio-ports/*/dev | head -n 1)
mknod /dev/vp c ${vp%:*} ${vp#*:} && (: < /dev/vp) 2>&1 | sed 's/^/vport: /'
true`

// TestDeviceRules: with docker's default device rules, a container root
// with CAP_MKNOD can make any node but opens only what the list allows
// (EPERM for the rest, the agent's own port included); without device rules
// every node opens, as before.
func TestDeviceRules(t *testing.T) {
	e := newEnv(t)
	caps := append(e.spec.Process.Capabilities.Bounding, "CAP_MKNOD")
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	e.spec.Linux.Resources = &specs.LinuxResources{Devices: testutil.DockerDeviceRules()}
	r := e.runArgs("dev-rules", "sh", "-c", devicesScript)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	out := r.stdout
	for _, want := range []string{"mknod-ok", "null-ok", "Operation not permitted", "vport: "} {
		if !strings.Contains(out, want) {
			t.Errorf("with docker's rules: output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "kmsg-opened") {
		t.Errorf("with docker's rules: a 1:11 node opened: %q", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "vport: ") && !strings.Contains(l, "Operation not permitted") {
			t.Errorf("with docker's rules: the virtio-serial port: %q, want Operation not permitted", l)
		}
	}

	e.spec.Linux.Resources = nil
	r = e.runArgs("dev-none", "sh", "-c", devicesScript)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"mknod-ok", "kmsg-opened", "null-ok"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("without device rules: output %q lacks %q", r.stdout, want)
		}
	}
	if strings.Contains(r.stdout, "Operation not permitted") {
		t.Errorf("without device rules: %q", r.stdout)
	}
}
