package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestNearestRank(t *testing.T) {
	for _, c := range []struct {
		n    int
		p    float64
		want int
	}{
		{50, 99, 50}, {50, 50, 25}, {50, 98, 49}, {100, 99, 99}, {100, 50, 50},
		{15, 99, 15}, {15, 50, 8}, {1, 99, 1}, {1, 50, 1}, {200, 99, 198}, {10, 0, 1},
	} {
		if got := nearestRank(c.n, c.p); got != c.want {
			t.Errorf("nearestRank(%d, %v) = %d, want %d", c.n, c.p, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	// 1..50 shuffled: p50 is the 25th smallest, p99 the largest.
	var xs []float64
	for i := 0; i < 50; i++ {
		xs = append(xs, float64((i*17)%50+1))
	}
	if got := percentile(xs, 50); got != 25 {
		t.Errorf("p50 = %v, want 25", got)
	}
	if got := percentile(xs, 99); got != 50 {
		t.Errorf("p99 = %v, want 50", got)
	}
	if xs[0] != 1 || xs[1] != 18 {
		t.Errorf("percentile sorted its input: %v", xs[:2])
	}
	// 100 samples: p99 is the 2nd largest, not the largest.
	xs = nil
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	if got := percentile(xs, 99); got != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99", got)
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("p50 of nothing = %v, want NaN", got)
	}
}

func TestRankName(t *testing.T) {
	for _, c := range []struct {
		n    int
		p    float64
		want string
	}{{50, 99, "largest"}, {100, 99, "2nd largest"}, {50, 50, "25th"}, {15, 50, "8th"}, {200, 99, "3rd largest"}, {0, 99, "undefined"}} {
		if got := rankName(c.n, c.p); got != c.want {
			t.Errorf("rankName(%d, %v) = %q, want %q", c.n, c.p, got, c.want)
		}
	}
	for k, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 112: "112th"} {
		if got := ordinal(k); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", k, got, want)
		}
	}
}

func TestStatTicks(t *testing.T) {
	// A comm with spaces and a ')' in it; utime 1200, stime 300, cutime 40,
	// cstime 5 (fields 14-17), then priority 20 and more that must not count.
	stat := "4242 (qemu) x (y)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1200 300 40 5 20 0 9 0 12345 100000 2000"
	got, err := statTicks(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1545 {
		t.Errorf("statTicks = %d, want 1545", got)
	}
	for _, bad := range []string{"", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u 3 4 5 20"} {
		if _, err := statTicks(bad); err == nil {
			t.Errorf("statTicks(%q): no error", bad)
		}
	}
	// This process's own line parses, and its CPU does not go down.
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	if _, err := statTicks(string(self)); err != nil {
		t.Errorf("/proc/self/stat: %v", err)
	}
}

func TestCPUDelta(t *testing.T) {
	before := map[int]cpuSample{
		10: {"qemu", 1000},
		11: {"virtiofsd", 50},
		12: {"runvirt monitor", 7},   // exits before after
		13: {"runvirt stand-in", 90}, // pid reused by a new process with fewer ticks
	}
	after := map[int]cpuSample{
		10: {"qemu", 1250},          // +250 ticks = 2500 ms
		11: {"virtiofsd", 53},       // +3 = 30 ms
		13: {"runvirt stand-in", 4}, // new process: 4 whole = 40 ms
		14: {"runvirt monitor", 2},  // started in between: 2 whole = 20 ms
		15: {"qemu", 1},             // another qemu: adds to its kind, 10 ms
	}
	got := cpuDelta(before, after)
	want := map[string]float64{"qemu": 2510, "virtiofsd": 30, "runvirt stand-in": 40, "runvirt monitor": 20}
	if len(got) != len(want) {
		t.Fatalf("cpuDelta = %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("cpuDelta[%s] = %v, want %v", k, got[k], v)
		}
	}
	if s := sumMs(got); s != 2600 {
		t.Errorf("sumMs = %v, want 2600", s)
	}
}

func TestExecCPU(t *testing.T) {
	c := &execCPU{
		Tree:   []float64{10, 12, 14, 16}, // 52 ms over 4 execs
		LoopS:  2,
		LongMs: map[string]float64{"qemu": 100, "runvirt monitor": 8},
		IdleS:  5,
		IdleMs: 50, // 10 ms/s idle, 20 ms over the 2 s loop
	}
	if got := c.perExec(); got != 40 { // (52 + 108) / 4
		t.Errorf("perExec = %v, want 40", got)
	}
	if got := c.idlePerExec(); got != 5 { // 20 ms / 4
		t.Errorf("idlePerExec = %v, want 5", got)
	}
	empty := &execCPU{}
	if !math.IsNaN(empty.perExec()) || !math.IsNaN(empty.idlePerExec()) {
		t.Errorf("no execs: perExec %v, idlePerExec %v, want NaN", empty.perExec(), empty.idlePerExec())
	}
}

// TestSampleCPU reads the real /proc: this process's CPU is found, grows
// with work, and a process that is gone is left out.
func TestSampleCPU(t *testing.T) {
	me := procInfo{Pid: os.Getpid(), Comm: "test"}
	gone := procInfo{Pid: 1 << 30, Comm: "gone"}
	k := func(procInfo) string { return "self" }
	s0 := sampleCPU([]procInfo{me, gone}, k)
	if len(s0) != 1 {
		t.Fatalf("sampleCPU = %v, want this process only", s0)
	}
	for end := time.Now().Add(60 * time.Millisecond); time.Now().Before(end); {
	}
	s1 := sampleCPU([]procInfo{me}, k)
	if d := cpuDelta(s0, s1)["self"]; d < 10 {
		t.Errorf("60 ms of busy loop counted %v ms", d)
	}
}

func TestRusageMs(t *testing.T) {
	if rusageMs(nil) != 0 {
		t.Error("rusageMs(nil) != 0")
	}
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"}, &os.ProcAttr{})
	if err != nil {
		t.Skip(err)
	}
	ps, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ms := rusageMs(ps); ms <= 0 {
		t.Errorf("rusageMs of a busy shell = %v", ms)
	}
}

func TestExecSectionReport(t *testing.T) {
	b := &bench{}
	b.res.Exec = map[string][]float64{eRunvirt: make([]float64, 50), eRunc: make([]float64, 50)}
	for i := range 50 {
		b.res.Exec[eRunvirt][i] = float64(100 + i)
		b.res.Exec[eRunc][i] = float64(50 + i)
	}
	b.res.ExecCPU = map[string]*execCPU{
		eRunvirt: {Tree: make([]float64, 50), LoopS: 10, LongMs: map[string]float64{"qemu": 1000}, IdleS: 5, IdleMs: 100},
		eRunc:    {Tree: make([]float64, 50), LoopS: 10, LongMs: map[string]float64{}, IdleS: 5},
	}
	for i := range 50 {
		b.res.ExecCPU[eRunvirt].Tree[i] = 10
		b.res.ExecCPU[eRunc].Tree[i] = 5
	}
	b.res.ExecBreak = map[string][]float64{bRVVersion: {20}, bRVState: {60}, bRCVersion: {10}, bRCState: {15}}
	var w strings.Builder
	b.execSection(func(f string, a ...any) { fmt.Fprintf(&w, f, a...) })
	out := w.String()
	for _, want := range []string{
		"(n = 50: p50 is the 25th, p99 the largest)",
		"| " + eRunvirt + " | 124 | 149 | 100–149 | 50 |",
		// (500 + 1000) / 50 = 30 ms; 3 s per 100 probes; idle 20 ms/s × 10 s / 50 = 4.
		"| " + eRunvirt + " | 30.0 | 3.00 | 10.0 (10.0) | 20.0 | 4.0 |",
		"| " + eRunc + " | 5.0 | 0.50 | 5.0 (5.0) | 0.0 | 0.0 |",
		"runvirt/runc: 6.0× the CPU per exec.",
		"| `exec ID true` − `state ID`: the exec itself | 64 | 59 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
