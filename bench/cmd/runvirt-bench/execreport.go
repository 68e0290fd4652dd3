package main

import (
	"fmt"
	"math"
	"strings"
)

// execSection writes §2: exec latency (p50, p99), host CPU per exec and the
// split of runvirt's exec time.
func (b *bench) execSection(p func(string, ...any)) {
	r := &b.res
	p("## 2. exec latency\n\n")
	p("`exec` of `true` into a running container (`sleep`): one warm-up round not counted, then n rounds of runvirt's\n")
	p("exec followed by runc's. p50 and p99 by the nearest-rank rule, the sample of rank ⌈p/100 · n⌉ among the n sorted\n")
	n := len(r.Exec[eRunvirt])
	p("(n = %d: p50 is the %s, p99 the %s).\n\n", n, ordinal(nearestRank(n, 50)), rankName(n, 99))
	p("| | p50 ms | p99 ms | [min–max] | n |\n|---|---:|---:|---:|---:|\n")
	for _, v := range []string{eRunvirt, eRunc} {
		s := summarize(r.Exec[v])
		p("| %s | %.0f | %.0f | %.0f–%.0f | %d |\n", v, percentile(r.Exec[v], 50), percentile(r.Exec[v], 99), s.Min, s.Max, s.N)
	}
	p("\n")

	rv, rc := r.ExecCPU[eRunvirt], r.ExecCPU[eRunc]
	if rv == nil || rc == nil || rv.n() == 0 || rc.n() == 0 {
		return
	}
	p("**Host CPU per exec**: the user+system time every host process spends, divided by the execs. The exec command's\n")
	p("own process tree is its rusage from wait4 (it includes the descendants it waited for: runc's `runc init` and the\n")
	p("process; runvirt's exec is one process that talks to the agent). The container's long-lived processes are\n")
	p("`/proc/PID/stat` utime+stime+cutime+cstime over the counted loop (%.1f s, both runtimes interleaved): for runvirt the\n", rv.LoopS)
	p("monitor, QEMU (its vCPU runs the guest's side of the exec: the agent, the spawn, `true`), virtiofsd and the init's\n")
	p("stand-in; for runc the container's init. Those run anyway, so the last column is what they spend idle over the\n")
	p("loop's time, at the rate measured over %.0f s without execs just before it; it is part of the total.\n", rv.IdleS)
	p("\"CPU s per 100 exec probes\" is what 100 pods probing once a second cost a node: CPU seconds each second, i.e. cores.\n\n")
	p("| | CPU ms per exec | CPU s per 100 exec probes | exec command tree, ms per exec (p50) | long-lived processes, ms per exec | of which idle background |\n")
	p("|---|---:|---:|---:|---:|---:|\n")
	for _, v := range []struct {
		name string
		c    *execCPU
	}{{eRunvirt, rv}, {eRunc, rc}} {
		c := v.c
		p("| %s | %.1f | %.2f | %.1f (%.1f) | %.1f | %.1f |\n", v.name, c.perExec(), c.perExec()/10,
			c.treeMs()/float64(c.n()), percentile(c.Tree, 50), c.longMs()/float64(c.n()), c.idlePerExec())
	}
	var kinds []string
	for _, k := range keysSorted(rv.LongMs) {
		kinds = append(kinds, fmt.Sprintf("%s %.1f", k, rv.LongMs[k]/float64(rv.n())))
	}
	p("\nrunvirt's long-lived processes, ms per exec: %s. CPU times of long-lived processes come in ticks of %d ms.\n", strings.Join(kinds, ", "), 1000/userHZ)
	if rc.perExec() > 0 {
		p("runvirt/runc: %.1f× the CPU per exec.\n", rv.perExec()/rc.perExec())
	}

	br := r.ExecBreak
	if len(br[bRVState]) == 0 || len(br[bRCState]) == 0 {
		p("\n")
		return
	}
	p("\n**Where the exec's time goes** (runvirt logs no exec milestones; by subtraction of p50s, each command run n = %d\n", len(br[bRVState]))
	p("times after the CPU loop, interleaved). `state` is a process start, loading the container and, for runvirt, one\n")
	p("round trip to the agent; what an exec adds to it is runvirt's other round trips (create the process, attach its\n")
	p("stdio, open its wait stream, start it, its exit status back) and the guest spawning `true`, runc's setns+exec.\n\n")
	p("| p50 ms | runvirt | runc |\n|---|---:|---:|\n")
	ver := [2]float64{percentile(br[bRVVersion], 50), percentile(br[bRCVersion], 50)}
	st := [2]float64{percentile(br[bRVState], 50), percentile(br[bRCState], 50)}
	ex := [2]float64{percentile(r.Exec[eRunvirt], 50), percentile(r.Exec[eRunc], 50)}
	row := func(name string, v [2]float64) { p("| %s | %.0f | %.0f |\n", name, v[0], v[1]) }
	row("process start and exit (`--version`)", ver)
	row("`state ID` − `--version`: load the container (runvirt: and one agent round trip)", [2]float64{st[0] - ver[0], st[1] - ver[1]})
	row("`exec ID true` − `state ID`: the exec itself", [2]float64{ex[0] - st[0], ex[1] - st[1]})
	row("`exec ID true`", ex)
	p("\n")
}

// onlyReport is §2 alone, for `-only exec`, with what the run's numbers
// need beside them.
func (b *bench) onlyReport() string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	p("<!-- runvirt-bench -only exec, %s: a part of the report, not BENCHMARKS.md -->\n\n", b.res.Date)
	for _, f := range b.res.Facts {
		p("- %s: %s\n", f[0], f[1])
	}
	p("- load average before / after: %s / %s; other users' QEMUs: %v\n\n", b.res.LoadBefore, b.res.LoadAfter, b.res.ForeignQEMUs)
	b.execSection(p)
	for _, e := range b.res.Errors {
		p("- error: %s\n", e)
	}
	return w.String()
}

// rankName says which sample the p-th percentile of n is, counted from the
// top where that is shorter ("the largest", "the 2nd largest").
func rankName(n int, p float64) string {
	k := nearestRank(n, p)
	switch {
	case n == 0:
		return "undefined"
	case k == n:
		return "largest"
	case n-k+1 < k:
		return ordinal(n-k+1) + " largest"
	}
	return ordinal(k)
}

func ordinal(k int) string {
	if math.Abs(float64(k%100)-12) <= 1 {
		return fmt.Sprintf("%dth", k)
	}
	switch k % 10 {
	case 1:
		return fmt.Sprintf("%dst", k)
	case 2:
		return fmt.Sprintf("%dnd", k)
	case 3:
		return fmt.Sprintf("%drd", k)
	}
	return fmt.Sprintf("%dth", k)
}
