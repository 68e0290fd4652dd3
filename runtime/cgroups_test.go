package runtime

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostLimitFiles runs applyHostLimits on a fake hierarchy (hier "" for the
// v2 root, else a v1 one like "cpu,cpuacct") and returns what it wrote.
func hostLimitFiles(t *testing.T, hier string, r *specs.LinuxResources) map[string]string {
	t.Helper()
	old := cgroupRoot
	t.Cleanup(func() { cgroupRoot = old })
	cgroupRoot = t.TempDir()
	h := filepath.Join(cgroupRoot, hier)
	dir := filepath.Join(h, "ctr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := applyHostLimits(h, dir, r); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	return got
}

// The host writes the cpu controller's files of the shared translation
// (internal/cgroupv2) under v2, and under v1 clamps shares as it does.
func TestHostLimits(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	cpu := func(c specs.LinuxCPU) *specs.LinuxResources { return &specs.LinuxResources{CPU: &c} }
	tests := []struct {
		name string
		hier string // "" is the v2 root
		r    *specs.LinuxResources
		want map[string]string
	}{
		// Before the shared translation: cpu.weight 70369281052672.
		{"v2 shares 1", "", cpu(specs.LinuxCPU{Shares: u64(1)}), map[string]string{"cpu.weight": "1"}},
		// Before: cpu.weight 38144, which the kernel refuses.
		{"v2 shares above the range", "", cpu(specs.LinuxCPU{Shares: u64(1000000)}), map[string]string{"cpu.weight": "10000"}},
		{"v2 shares 1024", "", cpu(specs.LinuxCPU{Shares: u64(1024)}), map[string]string{"cpu.weight": "39"}},
		// Before: cpu.max "max 100000", lifting a quota set before.
		{"v2 quota and period 0", "", cpu(specs.LinuxCPU{Quota: i64(0), Period: u64(0)}), map[string]string{}},
		{"v2 quota -1", "", cpu(specs.LinuxCPU{Quota: i64(-1), Period: u64(50000)}), map[string]string{"cpu.max": "max 50000"}},
		{"v2 no cpuset, memory or pids", "", &specs.LinuxResources{
			CPU:    &specs.LinuxCPU{Quota: i64(20000), Cpus: "0", Mems: "0"},
			Memory: &specs.LinuxMemory{Limit: i64(1 << 20)},
			Pids:   &specs.LinuxPids{Limit: i64(20)},
		}, map[string]string{"cpu.max": "20000 100000"}},
		// Before: cpu.shares 1, which the kernel clamps to 2 itself.
		{"v1 shares 1", "cpu,cpuacct", cpu(specs.LinuxCPU{Shares: u64(1)}), map[string]string{"cpu.shares": "2"}},
		{"v1 shares above the range", "cpu,cpuacct", cpu(specs.LinuxCPU{Shares: u64(1000000)}), map[string]string{"cpu.shares": "262144"}},
		{"v1 quota -1", "cpu,cpuacct", cpu(specs.LinuxCPU{Quota: i64(-1), Period: u64(50000)}),
			map[string]string{"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "50000"}},
		{"v1 cpuset", "cpuset", cpu(specs.LinuxCPU{Shares: u64(1024), Cpus: "0-1", Mems: "0"}),
			map[string]string{"cpuset.cpus": "0-1", "cpuset.mems": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hostLimitFiles(t, tt.hier, tt.r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("wrote %v, want %v", got, tt.want)
			}
		})
	}
}

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
