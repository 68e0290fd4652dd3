package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestJoinHostMemoryCgroup: the monitor joins the memory cgroup of the
// spec's cgroupsPath, and only that one (the CPU limits come after the
// boot), on a v1 and on a v2 layout; without a cgroupsPath it joins none.
func TestJoinHostMemoryCgroup(t *testing.T) {
	old := cgroupRoot
	t.Cleanup(func() { cgroupRoot = old })
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/docker/abc"}}
	me := strconv.Itoa(os.Getpid())
	procs := func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "docker", "abc", "cgroup.procs"))
		return string(b)
	}

	cgroupRoot = t.TempDir()
	for _, c := range []string{"cpu", "cpuacct", "pids", "memory", "cpuset"} {
		os.Mkdir(filepath.Join(cgroupRoot, c), 0o755)
	}
	if err := joinHostMemoryCgroup(spec, "abc"); err != nil {
		t.Fatal(err)
	}
	if got := procs(filepath.Join(cgroupRoot, "memory")); got != me {
		t.Errorf("v1: memory cgroup.procs = %q, want our pid %s", got, me)
	}
	for _, c := range []string{"cpu", "cpuacct", "pids", "cpuset"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c, "docker")); err == nil {
			t.Errorf("v1: made a %s cgroup before the boot", c)
		}
	}

	cgroupRoot = t.TempDir()
	os.WriteFile(filepath.Join(cgroupRoot, "cgroup.controllers"), []byte("cpu memory pids"), 0o644)
	if err := joinHostMemoryCgroup(spec, "abc"); err != nil {
		t.Fatal(err)
	}
	if got := procs(cgroupRoot); got != me {
		t.Errorf("v2: cgroup.procs = %q, want our pid %s", got, me)
	}

	cgroupRoot = t.TempDir()
	if err := joinHostMemoryCgroup(&specs.Spec{Linux: &specs.Linux{}}, "abc"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(cgroupRoot); len(ents) != 0 {
		t.Errorf("no cgroupsPath: made %v", ents)
	}
}
