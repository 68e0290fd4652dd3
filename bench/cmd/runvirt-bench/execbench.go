package main

import (
	"encoding/json"
	"fmt"
	"log"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// exec variants (latency and CPU), and the commands that split runvirt's
// exec time by subtraction (runvirt logs no exec milestones).
const (
	eRunvirt = "runvirt exec `true` (microvm, virtio-fs)"
	eRunc    = "runc exec `true`"

	bRVVersion = "runvirt --version"
	bRVState   = "runvirt state"
	bRCVersion = "runc --version"
	bRCState   = "runc state"
)

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, not the
// kernel's HZ): 100 on the architectures runvirt builds for.
const userHZ = 100

// execCPU is the host CPU one runtime's execs cost: the exec commands' own
// process trees (each command's rusage from wait4, which includes the
// descendants it waited for: for runvirt its re-execs, for runc `runc init`
// and the process) and the long-lived processes of the container (runvirt:
// monitor, QEMU with the vCPU doing the guest's side, virtiofsd, the init's
// stand-in; runc: the container's init) over the counted loop.
type execCPU struct {
	Tree   []float64          // ms, one per counted exec
	LoopS  float64            // wall time of the counted loop, both runtimes interleaved
	LongMs map[string]float64 // long-lived processes' CPU over the loop, ms by kind
	IdleS  float64            // the idle window before the loop
	IdleMs float64            // long-lived processes' CPU over it
}

func (c *execCPU) n() int { return len(c.Tree) }

func (c *execCPU) treeMs() float64 {
	var s float64
	for _, v := range c.Tree {
		s += v
	}
	return s
}

func (c *execCPU) longMs() float64 {
	var s float64
	for _, v := range c.LongMs {
		s += v
	}
	return s
}

// perExec is all host CPU of the loop per exec, ms: what a probe costs a
// node, idle background of the loop's duration included.
func (c *execCPU) perExec() float64 {
	if c.n() == 0 {
		return math.NaN()
	}
	return (c.treeMs() + c.longMs()) / float64(c.n())
}

// idlePerExec is the part of perExec the long-lived processes would have
// spent anyway over the loop's wall time, at the rate of the idle window.
func (c *execCPU) idlePerExec() float64 {
	if c.n() == 0 || c.IdleS <= 0 {
		return math.NaN()
	}
	return c.IdleMs / c.IdleS * c.LoopS / float64(c.n())
}

// nearestRank is the 1-based rank of the p-th percentile of n sorted
// samples by the nearest-rank rule, ⌈p/100·n⌉: with n = 50, p50 is the
// 25th sample and p99 the 50th, the largest.
func nearestRank(n int, p float64) int {
	r := int(math.Ceil(p * float64(n) / 100))
	return max(1, min(r, n))
}

// percentile is the nearest-rank p-th percentile of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[nearestRank(len(s), p)-1]
}

// statTicks is utime+stime+cutime+cstime of a /proc/PID/stat line, in
// clock ticks: the process's own CPU (all threads) and that of the children
// it reaped, so a helper the monitor starts and waits for is counted too.
func statTicks(stat string) (int64, error) {
	r := strings.LastIndexByte(stat, ')') // comm may hold spaces and ')'
	if r < 0 {
		return 0, fmt.Errorf("stat %q: no comm", stat)
	}
	f := strings.Fields(stat[r+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return 0, fmt.Errorf("stat %q: %d fields after comm", stat, len(f))
	}
	var sum int64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: time %q: %w", s, err)
		}
		sum += v
	}
	return sum, nil
}

// cpuSample is one process's CPU so far.
type cpuSample struct {
	Kind  string
	Ticks int64
}

// sampleCPU reads the CPU of these processes; one that is gone is left out.
func sampleCPU(procs []procInfo, kindOf func(procInfo) string) map[int]cpuSample {
	out := make(map[int]cpuSample)
	for _, p := range procs {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if err != nil {
			continue
		}
		if t, err := statTicks(string(st)); err == nil {
			out[p.Pid] = cpuSample{kindOf(p), t}
		}
	}
	return out
}

// cpuDelta is the CPU, ms by kind, the processes of after spent since
// before. A process that started in between counts whole; one whose ticks
// went down is a reused pid and counts whole too. One that exited in
// between is lost unless a process of after reaped it (its cutime).
func cpuDelta(before, after map[int]cpuSample) map[string]float64 {
	out := make(map[string]float64)
	for pid, a := range after {
		d := a.Ticks
		if b, ok := before[pid]; ok && b.Ticks <= a.Ticks {
			d -= b.Ticks
		}
		out[a.Kind] += float64(d) * 1000 / userHZ
	}
	return out
}

func sumMs(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// rusageMs is the user+system CPU of a waited command and of the
// descendants it waited for.
func rusageMs(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return float64((ps.UserTime() + ps.SystemTime()).Microseconds()) / 1000
}

// longLived lists a container's long-lived host processes for the CPU
// accounting: runvirt's monitor and stand-in and everything under them,
// runc's container init and everything under it.
func (b *bench) longLived(rv, rc string) (rvProcs, rcProcs []procInfo) {
	ps := listProcs()
	if roots, err := sandboxPids(b.root, rv); err == nil {
		rvProcs = tree(ps, roots...)
	}
	if out, err := b.runc("state", rc).Output(); err == nil {
		var st struct{ Pid int }
		if json.Unmarshal(out, &st) == nil && st.Pid > 0 {
			rcProcs = tree(ps, st.Pid)
		}
	}
	return rvProcs, rcProcs
}

func containerKind(procInfo) string { return "container" }

func (b *bench) execLatency() {
	log.Printf("exec latency and CPU: %d each", b.o.ExecReps)
	if err := b.writeSpec([]string{"sleep", "1000000"}); err != nil {
		b.fail("exec: %v", err)
		return
	}
	rv, rc := b.id("ex"), b.id("exrc")
	if _, _, err := timed(b.runvirt("run", "-d", "--config", b.cfg[cfgPrimary], "--bundle", b.bundle, rv)); err != nil {
		b.fail("exec: start runvirt container: %v", err)
		return
	}
	defer b.runvirt("delete", "--force", rv).Run()
	if _, _, err := timed(b.runc("run", "-d", "--bundle", b.bundle, rc)); err != nil {
		b.fail("exec: start runc container: %v", err)
		return
	}
	defer b.runc("delete", "--force", rc).Run()
	round := func(count bool) {
		for _, v := range []struct {
			name string
			cmd  *exec.Cmd
		}{{eRunvirt, b.runvirt("exec", rv, "true")}, {eRunc, b.runc("exec", rc, "true")}} {
			d, _, err := timed(v.cmd)
			if err != nil {
				b.fail("exec %s: %v", v.name, err)
				continue
			}
			if count {
				b.res.Exec[v.name] = append(b.res.Exec[v.name], ms(d))
				c := b.res.ExecCPU[v.name]
				c.Tree = append(c.Tree, rusageMs(v.cmd.ProcessState))
			}
		}
	}
	b.res.ExecCPU[eRunvirt] = &execCPU{}
	b.res.ExecCPU[eRunc] = &execCPU{}
	round(false) // the warm-up

	// What the long-lived processes spend idle, to tell it apart from what
	// the execs cost them.
	rvP, rcP := b.longLived(rv, rc)
	rv0, rc0 := sampleCPU(rvP, kind), sampleCPU(rcP, containerKind)
	t0 := time.Now()
	time.Sleep(b.o.ExecIdle)
	rvP, rcP = b.longLived(rv, rc)
	rv1, rc1 := sampleCPU(rvP, kind), sampleCPU(rcP, containerKind)
	idle := time.Since(t0).Seconds()
	b.res.ExecCPU[eRunvirt].IdleS, b.res.ExecCPU[eRunvirt].IdleMs = idle, sumMs(cpuDelta(rv0, rv1))
	b.res.ExecCPU[eRunc].IdleS, b.res.ExecCPU[eRunc].IdleMs = idle, sumMs(cpuDelta(rc0, rc1))

	t0 = time.Now()
	for i := 0; i < b.o.ExecReps; i++ {
		round(true)
	}
	loop := time.Since(t0).Seconds()
	rvP, rcP = b.longLived(rv, rc)
	rv2, rc2 := sampleCPU(rvP, kind), sampleCPU(rcP, containerKind)
	b.res.ExecCPU[eRunvirt].LoopS, b.res.ExecCPU[eRunvirt].LongMs = loop, cpuDelta(rv1, rv2)
	b.res.ExecCPU[eRunc].LoopS, b.res.ExecCPU[eRunc].LongMs = loop, cpuDelta(rc1, rc2)

	// The split, after the CPU accounting (state is an agent round trip,
	// which costs QEMU CPU too): a bare process start and exit, and a start
	// that loads the container and asks its agent once.
	for i := 0; i <= b.o.ExecReps; i++ {
		for _, v := range []struct {
			name string
			cmd  *exec.Cmd
		}{
			{bRVVersion, exec.Command(b.o.Runvirt, "--version")}, {bRVState, b.runvirt("state", rv)},
			{bRCVersion, exec.Command(b.o.Runc, "--version")}, {bRCState, b.runc("state", rc)},
		} {
			d, _, err := timed(v.cmd)
			if err != nil {
				b.fail("exec split %s: %v", v.name, err)
				continue
			}
			if i > 0 {
				b.res.ExecBreak[v.name] = append(b.res.ExecBreak[v.name], ms(d))
			}
		}
	}
	b.sampleLoad()
}
