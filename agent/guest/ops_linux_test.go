package guest

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
)

// fakeCgroup writes files into a temporary directory standing in for a
// cgroup.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadStats(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{
		"cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n" +
			"core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\n" +
			"nr_bursts 0\nburst_usec 0\n",
		"memory.current":      "8388608\n",
		"memory.max":          "16777216\n",
		"memory.peak":         "9000000\n",
		"memory.swap.current": "4096\n",
		"memory.swap.max":     "max\n",
		"memory.events":       "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
		"memory.stat":         "anon 4096\nfile 8192\nkernel 1024\n",
		"pids.current":        "4\n",
		"pids.max":            "max\n",
	})
	st, err := readStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := agent.Stats{
		CPU: agent.CPU{
			Usage:      agent.CPUUsage{Total: 1500000, User: 1000000, Kernel: 500000},
			Throttling: agent.Throttling{Periods: 10, ThrottledPeriods: 3, ThrottledTime: 250000},
		},
		Memory: agent.Memory{
			Cache: 8192,
			Usage: agent.MemoryEntry{Usage: 8388608, Limit: 16777216, Max: 9000000, Failcnt: 7},
			// memory+swap, as runc reports it; an unlimited swap stays unlimited.
			Swap: agent.MemoryEntry{Usage: 8388608 + 4096, Limit: math.MaxUint64},
			Raw:  map[string]uint64{"anon": 4096, "file": 8192, "kernel": 1024},
		},
		// pids.max "max" is 0 (no limit) in runc's output.
		Pids: agent.Pids{Current: 4, Limit: 0},
	}
	if !reflect.DeepEqual(st.CPU, want.CPU) {
		t.Errorf("cpu = %+v, want %+v", st.CPU, want.CPU)
	}
	if st.Memory.Cache != want.Memory.Cache || st.Memory.Usage != want.Memory.Usage || st.Memory.Swap != want.Memory.Swap {
		t.Errorf("memory = %+v, want %+v", st.Memory, want.Memory)
	}
	if len(st.Memory.Raw) != 3 || st.Memory.Raw["kernel"] != 1024 {
		t.Errorf("memory raw = %v", st.Memory.Raw)
	}
	if st.Pids != want.Pids {
		t.Errorf("pids = %+v, want %+v", st.Pids, want.Pids)
	}
}

func TestReadStatsLimits(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{
		"memory.current":      "100\n",
		"memory.max":          "1000\n",
		"memory.swap.current": "10\n",
		"memory.swap.max":     "500\n",
		"pids.current":        "1\n",
		"pids.max":            "64\n",
	})
	st, err := readStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Swap.Limit != 1500 || st.Memory.Swap.Usage != 110 {
		t.Errorf("swap = %+v, want limit 1500 usage 110 (memory+swap)", st.Memory.Swap)
	}
	if st.Pids.Limit != 64 {
		t.Errorf("pids limit = %d, want 64", st.Pids.Limit)
	}
}

func TestReadOOMKills(t *testing.T) {
	for _, tc := range []struct {
		name, events string // events "" means no memory.events
		want         uint64
		wantErr      bool
	}{
		{"killed", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n", 2, false},
		{"none", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", 0, false},
		{"hit the limit without a kill", "max 40\noom 1\noom_kill 0\n", 0, false},
		{"no memory controller", "", 0, false},
		{"garbage", "oom_kill lots\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			if tc.events != "" {
				files["memory.events"] = tc.events
			}
			n, err := readOOMKills(fakeCgroup(t, files))
			if n != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("readOOMKills = %d, %v; want %d, error %v", n, err, tc.want, tc.wantErr)
			}
		})
	}
}

// Without the memory and pids controllers the fields stay zero and the
// processes are counted from cgroup.procs, as runc does.
func TestReadStatsWithoutControllers(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{
		"cpu.stat":     "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
		"cgroup.procs": "12\n13\n14\n",
	})
	st, err := readStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids.Current != 3 || st.Pids.Limit != 0 {
		t.Errorf("pids = %+v, want 3 counted from cgroup.procs", st.Pids)
	}
	if st.Memory.Usage != (agent.MemoryEntry{}) || st.Memory.Raw != nil || st.CPU.Usage.Total != 10000 {
		t.Errorf("stats = %+v", st)
	}
}

func TestReadStatsMalformed(t *testing.T) {
	for name, content := range map[string]string{
		"cpu.stat":       "usage_usec lots\n",
		"memory.current": "12k\n",
		"memory.stat":    "anon\n",
	} {
		dir := fakeCgroup(t, map[string]string{name: content})
		_, err := readStats(dir)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s = %q: err = %v, want a parse error naming the file", name, content, err)
		}
	}
}

func TestUpdateCgroupCompletesHalves(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	dir := fakeCgroup(t, map[string]string{
		"cpu.max":         "50000 100000\n",
		"memory.max":      "1048576\n",
		"memory.swap.max": "max\n",
		"pids.max":        "max\n",
	})
	// A new period keeps the quota; a swap limit is relative to the current
	// memory limit.
	err := updateCgroup(dir, &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Period: u64(200000)},
		Memory: &specs.LinuxMemory{Swap: i64(3 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"cpu.max":         "50000 200000",
		"memory.max":      "1048576",
		"memory.swap.max": strconv.Itoa(2 << 20),
		"pids.max":        "32",
	} {
		if got := readFile(t, filepath.Join(dir, f)); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	// A new quota keeps the period; -1 lifts it.
	if err := updateCgroup(dir, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1)}}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cpu.max")); got != "max 200000" {
		t.Errorf("cpu.max = %q, want \"max 200000\"", got)
	}
}

// An update's 0 keeps a limit, as runc's: memory.max 0 would OOM-kill the
// container at once (the guest wrote it), pids 0 keeps pids.max (-1 lifts
// it). Shares of 1 are clamped to weight 1.
func TestUpdateCgroupZeroKeeps(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	dir := fakeCgroup(t, map[string]string{
		"cpu.weight": "39\n",
		"memory.max": "1048576\n",
		"pids.max":   "32\n",
	})
	err := updateCgroup(dir, &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: u64(1)},
		Memory: &specs.LinuxMemory{Limit: i64(0)},
		Pids:   &specs.LinuxPids{Limit: i64(0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"cpu.weight": "1", "memory.max": "1048576\n", "pids.max": "32\n"} {
		if got := readFile(t, filepath.Join(dir, f)); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if err := updateCgroup(dir, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "pids.max")); got != "max" {
		t.Errorf("pids.max = %q after -1, want max", got)
	}
}

// A freeze the kernel never confirms ends after the timeout and is undone.
func TestFreezeTimesOut(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{
		"cgroup.freeze": "0\n",
		"cgroup.events": "populated 1\nfrozen 0\n",
	})
	start := time.Now()
	err := freezeCgroup(dir, true, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not frozen after") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze after a failed freeze = %q, want 0", got)
	}
}

// useUnifiedCgroup points cgroupRoot at a cgroup2 mount with the freezer
// (cgroup.freeze in child cgroups), or skips.
func useUnifiedCgroup(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t, "create cgroups")
	old := cgroupRoot
	t.Cleanup(func() { cgroupRoot = old })
	if cgroupsEnabled() {
		return
	}
	cgroupRoot = "/sys/fs/cgroup/unified"
	if !cgroupsEnabled() {
		cgroupRoot = old
		t.Skip("skipping, no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	// A hybrid host's cgroup2 has no controllers, so a cgroup of this test
	// binary's own serves as the root: two test runs at once (or one left
	// over) never meet in the same runvirt/ID.
	own, err := os.MkdirTemp(cgroupRoot, "rvtest-")
	if err != nil {
		t.Fatal(err)
	}
	cgroupRoot = own
	t.Cleanup(func() { os.Remove(own) })
}

// cpuTicks is the user+system time of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

func TestPauseResumeRealCgroup(t *testing.T) {
	useUnifiedCgroup(t)
	const id = "pause-test"
	parent := filepath.Join(cgroupRoot, cgroupParent)
	if _, err := os.Stat(parent); errors.Is(err, os.ErrNotExist) {
		t.Cleanup(func() { os.Remove(parent) })
	}
	f, err := setupCgroup(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { os.Remove(cgroupDir(id)) })
	if _, err := os.Stat(filepath.Join(cgroupDir(id), "cgroup.freeze")); err != nil {
		t.Skipf("skipping, the cgroup2 hierarchy at %s has no freezer (kernel < 5.2): %v", cgroupRoot, err)
	}

	// A busy loop, moved into the container's cgroup.
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		writeExisting(filepath.Join(cgroupDir(id), "cgroup.freeze"), "0")
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := writeExisting(filepath.Join(cgroupDir(id), "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}

	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	p := &process{started: true, pid: pid, exited: make(chan struct{}), attached: map[string]bool{}}
	s.containers[id] = &container{id: id, spec: &specs.Spec{}, procs: map[string]*process{"": p}}

	if err := s.resume(id); !isStateErr(err, "container not paused") {
		t.Errorf("resume of a running container = %v, want \"container not paused\"", err)
	}
	if err := s.pause(id); err != nil {
		t.Fatal(err)
	}
	if !s.paused(id) {
		t.Error("paused() = false after pause")
	}
	if err := s.pause(id); !isStateErr(err, "container not running") {
		t.Errorf("pause of a paused container = %v, want \"container not running\"", err)
	}
	// Frozen: the busy loop gets no CPU time.
	before := cpuTicks(t, pid)
	time.Sleep(300 * time.Millisecond)
	if after := cpuTicks(t, pid); after != before {
		t.Errorf("a paused process ran: cpu ticks %d -> %d", before, after)
	}
	if err := s.resume(id); err != nil {
		t.Fatal(err)
	}
	if s.paused(id) {
		t.Error("paused() = true after resume")
	}
	before = cpuTicks(t, pid)
	time.Sleep(300 * time.Millisecond)
	if after := cpuTicks(t, pid); after == before {
		t.Error("a resumed process did not run")
	}

	st, _, err := s.stats(id)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU.Usage.Total == 0 || st.Pids.Current != 1 {
		t.Errorf("stats = cpu %+v pids %+v, want cpu time and 1 process", st.CPU.Usage, st.Pids)
	}

	// Once the init has exited, nothing can be paused.
	close(p.exited)
	if err := s.pause(id); !isStateErr(err, "container not running") {
		t.Errorf("pause of a stopped container = %v", err)
	}
	if _, _, err := s.stats(id); !isStateErr(err, "container not running") {
		t.Errorf("stats of a stopped container = %v", err)
	}
}

func TestOpsStateErrors(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	p := &process{exited: make(chan struct{}), attached: map[string]bool{}}
	s.containers["c"] = &container{id: "c", spec: &specs.Spec{}, procs: map[string]*process{"": p}}

	if err := s.pause("c"); !isStateErr(err, "container not running") {
		t.Errorf("pause of a created container = %v", err)
	}
	if err := s.resume("c"); !isStateErr(err, "container not paused") {
		t.Errorf("resume of a created container = %v", err)
	}
	var re *agent.RemoteError
	if err := s.pause("nope"); !errors.As(err, &re) || re.Kind != agent.ErrKindNotFound {
		t.Errorf("pause of an unknown container = %v", err)
	}
	if st, _, err := s.stats("c"); err != nil || st.Pids.Current != 0 {
		t.Errorf("stats of a created container = %+v, %v; want zeros", st, err)
	}
	if err := s.update("c", nil); !errors.As(err, &re) || re.Kind != agent.ErrKindInvalid {
		t.Errorf("update without resources = %v", err)
	}
	close(p.exited)
	limit := int64(7)
	if err := s.update("c", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}); !isStateErr(err, "container not running") {
		t.Errorf("update of a stopped container = %v", err)
	}
}

func isStateErr(err error, msg string) bool {
	var re *agent.RemoteError
	return errors.As(err, &re) && re.Kind == agent.ErrKindState && re.Msg == msg
}
