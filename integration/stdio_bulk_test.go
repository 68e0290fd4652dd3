package integration

import (
	"strings"
	"testing"
)

// Megabytes both ways through the monitor's session (stdin to the guest,
// stdout back) stay within the windows the frame check counts: a
// well-behaved agent is never refused.
func TestRunBulkStdio(t *testing.T) {
	e := newEnv(t)
	in := strings.Repeat("0123456789abcdef", 4<<20/16)
	e.spec.Process.Args = []string{"cat"}
	e.writeSpec()
	r := e.run(in, "run", "--bundle", e.bundle, "bulk")
	if r.code != 0 || len(r.stdout) != len(in) || r.stdout != in {
		t.Errorf("cat of %d bytes: exit %d, %d bytes back, stderr %q", len(in), r.code, len(r.stdout), r.stderr)
	}
}
