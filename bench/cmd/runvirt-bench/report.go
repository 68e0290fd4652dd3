package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

func mib(kib float64) float64 { return kib / 1024 }

// startStats summarises a start variant's wall time (field "") or one of
// its milestones.
func (b *bench) startStats(variant, field string) stats {
	return b.stageStats(variant, "", field)
}

// stageStats summarises, run by run, the milestone to minus the milestone
// from ("" as from: zero; "" as to: the wall time).
func (b *bench) stageStats(variant, from, to string) stats {
	r := b.res.Start[variant]
	if r == nil {
		return summarize(nil)
	}
	if to == "" {
		to = "wall"
	}
	var xs []float64
	for _, s := range r.Samples {
		t, ok := s[to]
		f, ok2 := s[from]
		if from == "" {
			f, ok2 = 0, true
		}
		if ok && ok2 {
			xs = append(xs, t-f)
		}
	}
	return summarize(xs)
}

// pairedRatio is, round by round, a's wall time over b's: the variants of
// a round ran back to back, so the ratio is less exposed to load from
// other users of the machine than the ratio of medians.
func (b *bench) pairedRatio(a, c string) stats {
	ra, rc := b.res.Start[a], b.res.Start[c]
	if ra == nil || rc == nil {
		return summarize(nil)
	}
	byRound := make(map[float64]float64)
	for _, s := range rc.Samples {
		byRound[s["round"]] = s["wall"]
	}
	var xs []float64
	for _, s := range ra.Samples {
		if w, ok := byRound[s["round"]]; ok && w > 0 {
			xs = append(xs, s["wall"]/w)
		}
	}
	return summarize(xs)
}

func ratioRow(w *strings.Builder, target, measured string, ratio, limit float64, paired ...stats) {
	verdict := "—"
	if !math.IsNaN(ratio) && ratio > 0 {
		if ratio <= limit {
			verdict = "**met**"
		} else {
			verdict = "**not met**"
		}
	}
	pr := "—"
	if len(paired) > 0 && paired[0].N > 0 {
		pr = paired[0].cell("%.2f×") + fmt.Sprintf(", n=%d", paired[0].N)
	}
	fmt.Fprintf(w, "| %s | %s | %.2f× | %s | ≤ %.1f× | %s |\n", target, measured, ratio, pr, limit, verdict)
}

func (b *bench) report() string {
	var w strings.Builder
	r := &b.res
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	p("# runvirt benchmarks\n\n")
	p("Written by `make bench` (`bench/cmd/runvirt-bench`) on %s; every number below is from that one run.\n", r.Date)
	p("runvirt side by side with runc and with the *floor*: a bare QEMU boot of the same kernel, with the\n")
	p("same machine, accelerator, memory and kernel command line as runvirt, none of runvirt's devices,\n")
	p("and a trivial static init (`bench/cmd/bench-init`) that powers the VM off at once.\n\n")
	p("## How to run\n\n")
	p("    sudo make bench                       # builds what it needs, writes BENCHMARKS.md\n")
	p("    sudo make bench BENCH_FLAGS='-reps 11 -sandboxes 20'   # more repetitions / sandboxes\n\n")
	p("Needs what `make deps` installs (QEMU, virtiofsd, busybox-static, runc) and Go. It takes about\n")
	p("%.0f minutes on the machine below (this run: %.1f min). It builds `bin/runvirt`, the guest image,\n", math.Ceil(r.Duration/60), r.Duration/60)
	p("the floor's init and the I/O workload (`bench/cmd/bench-io`, a static binary copied into the\n")
	p("container's rootfs), works under a fresh `/tmp/rvb-*` (its own `--root` for runvirt and runc),\n")
	p("removes everything it started, and writes the raw samples to `build/bench/results.json`.\n")
	p("Variants run interleaved, round by round, after one uncounted warm-up round, so that load from\n")
	p("other users of the machine spreads over all of them. Cells are **median [min–max]**, n samples.\n\n")
	p("Network throughput and latency are measured apart: `sudo make netbench` writes\n")
	p("BENCHMARKS-network.md.\n\n")
	p("On a host with working KVM the same command measures the KVM numbers: `accel = \"auto\"` picks KVM\n")
	p("(and `-cpu host`) for runvirt and for the floor alike; check the *accelerator* row below.\n\n")

	p("## Machine\n\n| | |\n|---|---|\n")
	for _, f := range r.Facts {
		p("| %s | %s |\n", f[0], f[1])
	}
	lo, hi := 0, 0
	for i, n := range r.ForeignQEMUs {
		if i == 0 || n < lo {
			lo = n
		}
		if n > hi {
			hi = n
		}
	}
	p("| load average (1/5/15 min) | %s before, %s after |\n", r.LoadBefore, r.LoadAfter)
	if hi > 0 {
		p("| other users' QEMUs running | %d–%d during the run (sampled between phases): the machine was shared, expect noise |\n\n", lo, hi)
	} else {
		p("| other users' QEMUs running | none seen at the samples between phases (other users' work may still have run in between) |\n\n")
	}
	if len(r.Errors) > 0 {
		p("**Errors in this run** (those samples are missing):\n\n")
		for _, e := range r.Errors {
			p("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		p("\n")
	}

	// Summary.
	p("## Targets (issue 6), this run\n\n")
	p("The verdict is on the ratio of the medians; the paired column is the median [min–max] of the per-round ratios\n")
	p("(the two variants ran back to back in each round), a check on how much load from other users moved it.\n\n")
	p("| target | measured (medians) | ratio | paired per round | target | |\n|---|---|---:|---:|---:|---|\n")
	rv, fl := b.startStats(vRVTrue, ""), b.startStats(vFloorQ35, "")
	ratioRow(&w, "`runvirt run true` vs floor, q35", fmt.Sprintf("%.0f ms vs %.0f ms", rv.Median, fl.Median), rv.Median/fl.Median, 1.3, b.pairedRatio(vRVTrue, vFloorQ35))
	if b.o.Microvm {
		rvm, flm := b.startStats(vRVMicroTrue, ""), b.startStats(vFloorMicrovm, "")
		ratioRow(&w, "`runvirt run true` vs floor, microvm", fmt.Sprintf("%.0f ms vs %.0f ms", rvm.Median, flm.Median), rvm.Median/flm.Median, 1.3, b.pairedRatio(vRVMicroTrue, vFloorMicrovm))
		ratioRow(&w, "`runvirt run true` microvm vs floor q35 (best runvirt vs the floor of the default machine)", fmt.Sprintf("%.0f ms vs %.0f ms", rvm.Median, fl.Median), rvm.Median/fl.Median, 1.3, b.pairedRatio(vRVMicroTrue, vFloorQ35))
	}
	ex, exrc := summarize(r.Exec[eRunvirt]), summarize(r.Exec[eRunc])
	ratioRow(&w, "`runvirt exec true` vs `runc exec true`", fmt.Sprintf("%.0f ms vs %.0f ms", ex.Median, exrc.Median), ex.Median/exrc.Median, 3)
	if fp := r.Footprint; fp != nil && fp.FloorOne > 0 {
		m, f, mf := summarize(fp.ManyTotals), summarize(fp.FloorMany), summarize(fp.MemfdMany)
		if m.N > 0 && f.N > 0 {
			ratioRow(&w, fmt.Sprintf("host PSS per sandbox, %d idle sandboxes vs %d bare idle QEMUs", fp.ManyN, fp.ManyN), fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(m.Median), mib(f.Median)), m.Median/f.Median, 1.2)
		}
		if m.N > 0 && mf.N > 0 {
			ratioRow(&w, fmt.Sprintf("host PSS per sandbox, %d idle sandboxes vs %d bare idle QEMUs with runvirt's memfd guest RAM", fp.ManyN, fp.ManyN), fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(m.Median), mib(mf.Median)), m.Median/mf.Median, 1.2)
		}
		own := float64(fp.OneTotal - fp.OneFile)
		ratioRow(&w, "own memory (PSS − file-backed PSS), 1 idle sandbox vs 1 bare idle QEMU", fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(own), mib(float64(fp.FloorOne-fp.FloorOneFile))), own/float64(fp.FloorOne-fp.FloorOneFile), 1.2)
		if fp.MemfdOne > 0 {
			ratioRow(&w, "own memory, 1 idle sandbox vs 1 bare idle QEMU with memfd guest RAM", fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(own), mib(float64(fp.MemfdOne-fp.MemfdOneFile))), own/float64(fp.MemfdOne-fp.MemfdOneFile), 1.2)
		}
		p("\nPSS of a *single* VM is not a stable measure on a shared machine: its file-backed part (the QEMU binary, the\n")
		p("mapped %d MB vmlinux) is split with every other process mapping the same files, other users' QEMUs included, so\n", b.kernelMB())
		p("it depends on who else runs (in this run: %.1f MiB for the single bare QEMU, %.1f MiB with memfd RAM, %.1f MiB\n", mib(float64(fp.FloorOneFile)), mib(float64(fp.MemfdOneFile)), mib(float64(fp.OneFile)))
		p("for the single sandbox; in earlier runs up to ~80 MiB for a single bare QEMU). Hence the verdicts on %d sandboxes side by side (where our own\n", fp.ManyN)
		p("VMs dominate the sharing) and, for one sandbox, on its own memory without the file-backed part. Full numbers in §3.\n")
	}
	p("\n")

	// 1. Start latency.
	p("## 1. Start latency\n\n")
	p("Wall time of the whole command as the caller sees it (exec → exit; for runvirt that includes\n")
	p("booting the VM, running the workload and tearing everything down; for the floor QEMU exec → QEMU exit).\n")
	p("Same busybox bundle for runc and runvirt (a config like `runvirt spec` writes, no terminal).\n\n")
	p("| variant | median ms | [min–max] | n |\n|---|---:|---:|---:|\n")
	for _, v := range r.StartOrder {
		s := b.startStats(v, "")
		p("| %s | %.0f | %.0f–%.0f | %d |\n", v, s.Median, s.Min, s.Max, s.N)
	}
	p("\n### Breakdown (runvirt `--debug` log, ms)\n\n")
	p("`qemu_started`, `agent_ready`: ms since the sandbox boot started (after the bundle is read and the share is set up);\n")
	p("`guest_boot`: the guest's own CLOCK_BOOTTIME when the agent was ready (kernel start → agent ready; the firmware\n")
	p("before the kernel is not in it); `container_created` … `torn_down`: ms since `runvirt run` started. For the floor,\n")
	p("`guest_init` is the guest's CLOCK_BOOTTIME when its init started.\n\n")
	cols := []string{vRVTrue, vRVEcho, vRV9pTrue}
	if b.o.Microvm {
		cols = append(cols, vRVMicroTrue)
	}
	p("| milestone |")
	for _, c := range cols {
		p(" %s |", strings.TrimPrefix(c, "runvirt run "))
	}
	p("\n|---|")
	for range cols {
		p("---:|")
	}
	p("\n")
	for _, f := range []string{"qemu_started", "guest_boot", "agent_ready", "container_created", "workload_started", "workload_exited", "torn_down", ""} {
		name := f
		if f == "" {
			name = "wall (runvirt exits)"
		}
		p("| %s |", name)
		for _, c := range cols {
			p(" %s |", b.startStats(c, f).cell("%.0f"))
		}
		p("\n")
	}
	p("\n| floor | q35 |")
	if b.o.Microvm {
		p(" microvm |")
	}
	p("\n|---|---:|")
	if b.o.Microvm {
		p("---:|")
	}
	p("\n| guest_init (guest clock) | %s |", b.startStats(vFloorQ35, "guest_init").cell("%.0f"))
	if b.o.Microvm {
		p(" %s |", b.startStats(vFloorMicrovm, "guest_init").cell("%.0f"))
	}
	p("\n| QEMU exec → exit | %s |", b.startStats(vFloorQ35, "").cell("%.0f"))
	if b.o.Microvm {
		p(" %s |", b.startStats(vFloorMicrovm, "").cell("%.0f"))
	}
	p("\n\nThe floor's command lines (the kernel options are `hypervisor.VM.Cmdline()`'s, less the `runvirt.*` keys):\n\n")
	for _, k := range keysSorted(r.Cmdline) {
		p("    %s\n", r.Cmdline[k])
	}
	p("\n")

	// 2. exec.
	p("## 2. exec latency\n\n")
	p("`exec` of `true` into a running container (`sleep`), one warm-up not counted, the two runtimes interleaved.\n\n")
	p("| | median ms | [min–max] | n |\n|---|---:|---:|---:|\n")
	for _, v := range []string{eRunvirt, eRunc} {
		s := summarize(r.Exec[v])
		p("| %s | %.0f | %.0f–%.0f | %d |\n", v, s.Median, s.Min, s.Max, s.N)
	}
	p("\n")

	// 3. Footprint.
	if fp := r.Footprint; fp != nil {
		p("## 3. Footprint\n\n")
		p("Host PSS (sum of `Pss` in `/proc/PID/smaps_rollup`) of every host process of an idle sandbox (`sleep` in\n")
		p("q35 + virtio-fs, 256 MiB): the runvirt monitor and everything under it (QEMU, virtiofsd and its sandboxed\n")
		p("child) and the runvirt stand-in, measured %.0f s after the last sandbox started. The floor: a bare QEMU\n", fp.Settle)
		p("(same kernel, machine, memory, kernel options; no devices, no shared memory backend) whose init sleeps.\n")
		p("With many sandboxes PSS splits the shared pages (the QEMU binary and libraries) between them.\n\n")
		p("| | PSS per sandbox / VM, MiB | of which file-backed (Pss_File) | n |\n|---|---:|---:|---:|\n")
		mibStats := func(xs []float64) string {
			st := summarize(xs)
			return stats{st.N, mib(st.Median), mib(st.Min), mib(st.Max)}.cell("%.1f")
		}
		one := func(name string, kb, file int) {
			p("| %s | %.1f | %.1f | 1 |\n", name, mib(float64(kb)), mib(float64(file)))
		}
		many := func(name string, kb, file []float64) {
			p("| %s | %s | %s | %d |\n", name, mibStats(kb), mibStats(file), len(kb))
		}
		one("runvirt, 1 idle sandbox", fp.OneTotal, fp.OneFile)
		many(fmt.Sprintf("runvirt, %d idle sandboxes", fp.ManyN), fp.ManyTotals, fp.ManyFile)
		one("floor: bare idle QEMU, 1", fp.FloorOne, fp.FloorOneFile)
		many(fmt.Sprintf("floor: bare idle QEMU, %d", fp.ManyN), fp.FloorMany, fp.FloorManyFile)
		one("floor with memfd guest RAM (as runvirt + virtio-fs), 1", fp.MemfdOne, fp.MemfdOneFile)
		many(fmt.Sprintf("floor with memfd guest RAM, %d", fp.ManyN), fp.MemfdMany, fp.MemfdManyFile)
		p("\nThe file-backed part (QEMU's binary and libraries, the mapped vmlinux and initrd) is split with every process\n")
		p("mapping the same files, *other users' QEMUs booting the same build/guest/vmlinux included*, so it moves with the\n")
		p("machine's load; the rest (anonymous and shmem: guest RAM, TCG's code cache, heaps) is the sandbox's own.\n\n")
		p("Transparent huge pages: host `%s`. QEMU asks for huge pages on anonymous guest RAM (MADV_HUGEPAGE), so a\n", thpSetting())
		p("bare QEMU's touched guest pages are counted in 2 MiB units (AnonHugePages of the single floor QEMU: %.1f MiB);\n", mib(float64(fp.FloorAnonHuge)))
		p("runvirt's virtio-fs sandboxes keep guest RAM in a shared memfd (shmem, which gets no THP here; the sandbox QEMU's\n")
		p("AnonHugePages, %.1f MiB, are its other anonymous memory, e.g. TCG's code buffer), so the memfd floor is the like-for-like one.\n\n", mib(float64(fp.SandboxAnonHuge)))
		p("Floor command lines (idle: `BENCH_IDLE=1` makes the init sleep):\n\n    %s\n    %s\n\n", fp.FloorArgs, fp.MemfdArgs)
		p("By process (PSS, MiB):\n\n| process | 1 sandbox | mean of %d sandboxes |\n|---|---:|---:|\n", fp.ManyN)
		for _, k := range keysSorted(fp.OneByKind) {
			mean := 0.0
			if len(fp.ManyTotals) > 0 {
				mean = mib(float64(fp.ManyByKind[k]) / float64(len(fp.ManyTotals)))
			}
			p("| %s | %.1f | %.1f |\n", k, mib(float64(fp.OneByKind[k])), mean)
		}
		if fp.Meminfo != nil {
			p("\nWhat the workload sees in its VM (`runvirt exec … cat /proc/meminfo`, configured `memory_mib = 256`):\n")
			p("MemTotal %.0f MiB, MemFree %.0f MiB, MemAvailable %.0f MiB.\n", mib(float64(fp.Meminfo["MemTotal"])), mib(float64(fp.Meminfo["MemFree"])), mib(float64(fp.Meminfo["MemAvailable"])))
			p("The rest of the 256 MiB is the guest kernel's own (its image, reserved memory, page tables).\n")
		}
		if fp.Free != "" {
			p("\n    $ runvirt exec ID free -m\n")
			for _, l := range strings.Split(fp.Free, "\n") {
				p("    %s\n", l)
			}
		}
		p("\n")
	}

	// 4. I/O.
	if len(r.IOOrder) > 0 {
		p("## 4. File I/O\n\n")
		p("`bench-io` inside the container, on the rootfs (`/iotest`) and on a bind mount (`/mnt/bind`), host files\n")
		p("on the same file system for all variants, %d MiB files, %d repetitions each. Sequential: 1 MiB blocks\n", b.o.IOMiB, b.o.IOReps)
		p("(write: a new file, no fsync; read: a file the host wrote, so in the host's page cache but not the guest's).\n")
		p("Random: 4 KiB at random aligned offsets of an existing file, up to 2000 ops or 1 s, no fsync.\n")
		p("Timed inside the container with the guest's clock.\n\n")
		p("| test | where |")
		for _, v := range r.IOOrder {
			p(" %s |", v)
		}
		p("\n|---|---|")
		for range r.IOOrder {
			p("---:|")
		}
		p("\n")
		for _, t := range ioTests {
			unit := "MiB/s"
			if strings.HasPrefix(t, "rand") {
				unit = "IOPS"
			}
			for _, loc := range []string{"rootfs", "bind mount"} {
				p("| %s (%s) | %s |", t, unit, loc)
				for _, v := range r.IOOrder {
					s := summarize(r.IO[v][loc+"/"+t])
					p(" %s |", s.cell("%.0f"))
				}
				p("\n")
			}
		}
		p("\n")
	}

	b.analysis(&w)
	return w.String()
}

// analysis explains the start-latency gap from the breakdown.
func (b *bench) analysis(w *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	med := func(v, f string) float64 { return b.startStats(v, f).Median }
	p("## Where the gap is\n\n")
	wall, floor := med(vRVTrue, ""), med(vFloorQ35, "")
	gb, gi := med(vRVTrue, "guest_boot"), med(vFloorQ35, "guest_init")
	st := func(from, to string) float64 { return b.stageStats(vRVTrue, from, to).Median }
	cell := func(v, from, to string) string { return b.stageStats(v, from, to).cell("%.0f") }
	p("q35 + virtio-fs, `runvirt run true` (median %.0f ms) against the q35 floor (median %.0f ms): a gap of **%.0f ms**.\n", wall, floor, wall-floor)
	p("Each stage is computed run by run, then summarised (median [min–max]); the medians of stages need not add up.\n\n")
	p("| stage | runvirt `true`, q35 | floor, q35 |")
	if b.o.Microvm {
		p(" runvirt `true`, microvm | floor, microvm |")
	}
	p("\n|---|---:|---:|")
	if b.o.Microvm {
		p("---:|---:|")
	}
	p("\n")
	row := func(name, from, to, ffrom, fto string) {
		p("| %s | %s | %s |", name, cell(vRVTrue, from, to), func() string {
			if fto == "-" {
				return "—"
			}
			return cell(vFloorQ35, ffrom, fto)
		}())
		if b.o.Microvm {
			fl := "—"
			if fto != "-" {
				fl = cell(vFloorMicrovm, ffrom, fto)
			}
			p(" %s | %s |", cell(vRVMicroTrue, from, to), fl)
		}
		p("\n")
	}
	row("guest clock: kernel start → agent ready (runvirt) / init started (floor)", "", "guest_boot", "", "guest_init")
	row("host, around the guest clock: QEMU start and firmware before the kernel, the news reaching the host (runvirt: agent_ready − guest_boot; floor: wall − guest_init, which also has power-off and QEMU exit)", "guest_boot", "agent_ready", "guest_init", "")
	row("create: the create call into the guest, and what `run` did before the boot started (container_created − agent_ready)", "agent_ready", "container_created", "", "-")
	row("start: stand-in + start call (workload_started − container_created)", "container_created", "workload_started", "", "-")
	row("workload runs, its exit reaches the host (workload_exited − workload_started)", "workload_started", "workload_exited", "", "-")
	row("teardown: VM stopped, mounts and state removed (torn_down − workload_exited)", "workload_exited", "torn_down", "", "-")
	row("runvirt process start/exit outside its own clock (wall − torn_down)", "torn_down", "", "", "-")
	row("**wall**", "", "", "", "")
	p("\n")
	p("Reading it:\n\n")
	p("- **Load.** The machine is shared (see *other users' QEMUs* above) and has 2 cores; every VM here is an emulated\n")
	p("  CPU competing for them, so single runs spread widely (see the [min–max]). The guest clock is no shelter: it keeps\n")
	p("  running while QEMU's vCPU thread waits for a core. Compare medians within this run, not with other runs.\n")
	p("- **The guest kernel dominates both.** The floor's own boot is %.0f ms of guest time under this accelerator; runvirt's\n", gi)
	p("  guest needs %.0f ms more before the agent answers: the 22 module loads from the initramfs (290–330 ms of guest time\n", gb-gi)
	p("  per guest-image/README.md), probing the extra virtio devices (rng, serial, virtio-fs), the agent's switch to a\n")
	p("  tmpfs root and mounting the share. A kernel with those drivers built in (issue 6, *a minimal guest kernel*) removes\n")
	p("  the module loads and shrinks the kernel's own boot (design.md measured ~0.8–1.1 s to init for such a kernel on microvm).\n")
	p("- **Work after the agent is ready** (create + start + run + teardown) costs %.0f ms (median), all on the critical path: every\n", st("agent_ready", "torn_down"))
	p("  host↔agent round trip and every process the guest spawns runs on an emulated CPU. `echo hi` (output relayed)\n")
	p("  took %s ms against `true`'s %s ms (median [min–max]).\n", b.startStats(vRVEcho, "").cell("%.0f"), b.startStats(vRVTrue, "").cell("%.0f"))
	if b.o.Microvm {
		mw, mf := med(vRVMicroTrue, ""), med(vFloorMicrovm, "")
		p("- **microvm** (`machine = \"microvm\"`): runvirt %.0f ms vs its floor %.0f ms (%.2f×); against the q35 floor %.2f×. microvm skips\n", mw, mf, mw/mf, mw/floor)
		p("  SeaBIOS (qboot) and PCI enumeration; the guest-clock part of runvirt's boot there is %.0f ms vs %.0f ms on q35.\n", med(vRVMicroTrue, "guest_boot"), gb)
	}
	if b.o.Microvm {
		p("- **Outside the guest clock**: runvirt's agent_ready − guest_boot is %.0f ms on q35 but %.0f ms on microvm, and the\n",
			st("guest_boot", "agent_ready"), b.stageStats(vRVMicroTrue, "guest_boot", "agent_ready").Median)
		p("  floor's wall − guest_init %.0f vs %.0f ms: on microvm more of the boot happens before the guest's CLOCK_BOOTTIME\n",
			b.stageStats(vFloorQ35, "guest_init", "").Median, b.stageStats(vFloorMicrovm, "guest_init", "").Median)
		p("  starts counting (or after it stops), although microvm has no SeaBIOS. Not explained yet: worth a trace (QEMU's load\n")
		p("  of the %d MB vmlinux, the guest's early TSC set-up with `tsc_early_khz`) before more microvm tuning.\n", b.kernelMB())
	}
	s9, sv := b.startStats(vRV9pTrue, ""), b.startStats(vRVTrue, "")
	p("- **9p vs virtio-fs at start**: %s vs %s ms wall (median [min–max]); the share is only mounted at boot, so\n", s9.cell("%.0f"), sv.cell("%.0f"))
	p("  the difference is the module probe and mount (9p: 9pnet, 9pnet_virtio, 9p; virtio-fs: fuse, virtiofs and\n")
	p("  virtiofsd's vhost-user set-up). Guest clock at agent ready: 9p %.0f vs virtio-fs %.0f ms.\n", med(vRV9pTrue, "guest_boot"), gb)
	ex, exrc := summarize(b.res.Exec[eRunvirt]), summarize(b.res.Exec[eRunc])
	p("- **exec**: %.0f ms vs runc's %.0f ms (%.1f×). A runvirt exec is a new runvirt process, the state and lock under\n", ex.Median, exrc.Median, ex.Median/exrc.Median)
	p("  `--root`, a connection to the agent over the serial port, the guest spawning the process into the container's\n")
	p("  namespaces on an emulated CPU, and its exit status coming back; runc does the same setns+exec natively.\n")
	p("- **runc** starts and runs `true` in %.0f ms: the VM's cost is the whole boot, so the floor, not runc, is the\n", med(vRuncTrue, ""))
	p("  meaningful reference for start latency; exec into a running VM has no boot in it and is compared with runc directly.\n")
	if fp := b.res.Footprint; fp != nil && fp.FloorOne > 0 {
		q := float64(fp.OneByKind["qemu"])
		p("- **Memory**: of the %.1f MiB PSS of one idle sandbox, QEMU is %.1f MiB; a bare idle QEMU is %.1f MiB with anonymous\n", mib(float64(fp.OneTotal)), mib(q), mib(float64(fp.FloorOne)))
		p("  guest RAM (huge pages) and %.1f MiB with a memfd like runvirt's. Against the latter, QEMU's extra is the guest memory\n", mib(float64(fp.MemfdOne)))
		p("  the bigger guest touched (the modules if any, the agent, the shared rootfs' page cache, virtio queues) plus TCG's\n")
		p("  translated-code cache for the extra code it ran (absent under KVM). Both QEMUs also keep the kernel image they\n")
		p("  loaded mapped (the %d MB uncompressed vmlinux, mapped privately, and the initrd): file pages,\n", b.kernelMB())
		p("  shared between QEMUs and so split by PSS, which is most of why the per-VM figure drops with %d of them; a minimal\n", fp.ManyN)
		p("  kernel would shrink it.\n")
		p("  The runvirt monitor and stand-in are Go processes: %.1f + %.1f MiB; virtiofsd %.1f MiB.\n",
			mib(float64(fp.OneByKind["runvirt monitor"])), mib(float64(fp.OneByKind["runvirt stand-in"])), mib(float64(fp.OneByKind["virtiofsd"])))
	}
	p("\n")
}

func thpSetting() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// kernelMB is the size of the guest kernel the run booted, in MB.
func (b *bench) kernelMB() int {
	st, err := os.Stat(b.kernel())
	if err != nil {
		return 0
	}
	return int(st.Size() / 1e6)
}
