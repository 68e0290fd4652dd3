package runtime

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A memory limit that would grow the VM past max_memory_mib is refused,
// naming the limit, the key and the file; one within it grows the VM.
func TestMemoryLimitBoundedByMax(t *testing.T) {
	withLimit := func(mib int64) *specs.Spec {
		l := mib << 20
		return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &l}}}}
	}
	base := SandboxConfig{VCPUs: 1, MemoryMiB: 256, MaxMemoryMiB: 8192}
	huge := withLimit(64 << 10)
	err := base.SizeFor(huge, 2).checkSize(huge, "/etc/runvirt/config.toml")
	if err == nil {
		t.Fatal("a 64 GiB limit was accepted under max_memory_mib = 8192")
	}
	for _, want := range []string{"limit 65536 MiB", "max_memory_mib = 8192", "/etc/runvirt/config.toml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	ok := withLimit(4096)
	sc := base.SizeFor(ok, 2)
	if err := sc.checkSize(ok, "x"); err != nil || sc.MemoryMiB != 4096+guestKernelMiB {
		t.Errorf("a 4 GiB limit: VM of %d MiB, %v", sc.MemoryMiB, err)
	}
}
