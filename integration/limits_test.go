package integration

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A memory limit above max_memory_mib (8 GiB by default) is refused before
// any VM starts, with an error naming the key; nothing is left behind.
// Unbounded, a 64 GiB limit made QEMU hold ~1.5 GiB of host memory at boot.
func TestMemoryLimitAboveMax(t *testing.T) {
	e := newEnv(t)
	limit := int64(64 << 30)
	e.spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	r := e.runArgs("huge", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "max_memory_mib = 8192") || !strings.Contains(r.stderr, "65536 MiB") {
		t.Errorf("a 64 GiB limit: exit %d, %q", r.code, r.stderr)
	}
}
