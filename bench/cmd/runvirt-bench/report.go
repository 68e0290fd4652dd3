package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	p("and a trivial static init (`bench/cmd/bench-init`) that powers the VM off at once. runvirt runs with\n")
	p("its default machine, microvm, and virtio-fs unless a row says otherwise; q35 is measured beside it.\n\n")
	p("## How to run\n\n")
	p("    sudo make bench                       # builds what it needs, writes BENCHMARKS.md\n")
	p("    sudo make bench BENCH_FLAGS='-reps 11 -sandboxes 20'   # more repetitions / sandboxes\n")
	p("    sudo make bench BENCH_FLAGS='-only exec'   # §2 alone, printed; BENCHMARKS.md is left as it is\n\n")
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
	rv, fl := b.startStats(vRVTrue, ""), b.startStats(vFloorMicrovm, "")
	ratioRow(&w, "`runvirt run true` vs floor, microvm (the default machine)", fmt.Sprintf("%.0f ms vs %.0f ms", rv.Median, fl.Median), rv.Median/fl.Median, 1.3, b.pairedRatio(vRVTrue, vFloorMicrovm))
	if b.o.Q35 {
		rq, fq := b.startStats(vRVQ35True, ""), b.startStats(vFloorQ35, "")
		ratioRow(&w, "`runvirt run true` vs floor, q35", fmt.Sprintf("%.0f ms vs %.0f ms", rq.Median, fq.Median), rq.Median/fq.Median, 1.3, b.pairedRatio(vRVQ35True, vFloorQ35))
	}
	if rt := b.startStats(vRVTemplate, ""); rt.N > 0 {
		ratioRow(&w, "`runvirt run true` from a template (`template = true`, 9p) vs floor, microvm", fmt.Sprintf("%.0f ms vs %.0f ms", rt.Median, fl.Median), rt.Median/fl.Median, 1.3, b.pairedRatio(vRVTemplate, vFloorMicrovm))
	}
	ex, exrc := summarize(r.Exec[eRunvirt]), summarize(r.Exec[eRunc])
	ratioRow(&w, "`runvirt exec true` vs `runc exec true`", fmt.Sprintf("%.0f ms vs %.0f ms", ex.Median, exrc.Median), ex.Median/exrc.Median, 1.3)
	if fp := r.Footprint; fp != nil && fp.FloorOne > 0 {
		m, f, mf := summarize(fp.ManyTotals), summarize(fp.FloorMany), summarize(fp.MemfdMany)
		if m.N > 0 && f.N > 0 {
			ratioRow(&w, fmt.Sprintf("host PSS per sandbox, %d idle sandboxes vs %d bare idle QEMUs", fp.ManyN, fp.ManyN), fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(m.Median), mib(f.Median)), m.Median/f.Median, 1.2)
		}
		if tm := summarize(fp.TemplateMany); tm.N > 0 && f.N > 0 {
			ratioRow(&w, fmt.Sprintf("host PSS per sandbox, %d idle sandboxes from a template (`template = true`; the template's RAM file, %.1f MiB, is held once beside them) vs %d bare idle QEMUs", tm.N, mib(float64(r.TemplateRAMKiB)), fp.ManyN), fmt.Sprintf("%.1f MiB vs %.1f MiB", mib(tm.Median), mib(f.Median)), tm.Median/f.Median, 1.2)
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
		p("for the single sandbox). Hence the verdicts on %d sandboxes side by side (where our own\n", fp.ManyN)
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
	cols := []string{vRVTrue, vRVEcho, vRV9pTrue, vRV9pNoNIC, vRVTemplate}
	if b.o.Q35 {
		cols = append(cols, vRVQ35True)
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
	floors := []string{vFloorMicrovm}
	if b.o.Q35 {
		floors = append(floors, vFloorQ35)
	}
	p("\n| floor |")
	for _, f := range floors {
		p(" %s |", strings.TrimSuffix(strings.TrimPrefix(f, "floor: bare QEMU boot → power off ("), ")"))
	}
	p("\n|---|")
	for range floors {
		p("---:|")
	}
	p("\n| guest_init (guest clock) |")
	for _, f := range floors {
		p(" %s |", b.startStats(f, "guest_init").cell("%.0f"))
	}
	p("\n| QEMU exec → exit |")
	for _, f := range floors {
		p(" %s |", b.startStats(f, "").cell("%.0f"))
	}
	p("\n")
	if b.startStats(vTemplate, "").N > 0 || b.startStats(vTemplateShr, "").N > 0 {
		p("\n**From a template** (docs/design-templates.md): the microvm floor guest booted once with `BENCH_TEMPLATE=1`,\n")
		p("its init waiting on the console, and saved (QMP `stop`, `migrate`); each sample restores a copy into a new\n")
		p("QEMU with the same command line plus `-incoming defer` (QMP `migrate-incoming` from the state file, passed as\n")
		p("an fd), `cont` once loaded, writes a line on the console, and the restored init prints and powers off.\n")
		p("*RAM loaded*: anonymous guest RAM, saved in the state (%.1f MB: the pages the guest touched) and loaded into\n", float64(r.TemplateBytes[tmplCopy])/1e6)
		p("each copy. *RAM shared*: the template's guest RAM is a file (`memory-backend-file`, `share=on`), left out of the\n")
		p("state by QEMU's `x-ignore-shared` capability (state %.2f MB), and each copy maps the same file privately\n", float64(r.TemplateBytes[tmplShared])/1e6)
		p("(`share=off`): nothing to load, pages read from the template's file as the guest touches them, its writes its own.\n")
		p("ms since QEMU's exec:\n\n")
		p("| milestone | RAM loaded | RAM shared |\n|---|---:|---:|\n")
		for _, m := range [][2]string{
			{"qemu_ready", "QEMU up (QMP answers)"},
			{"restored", "state loaded, VM told to run"},
			{"resumed", "the restored init answered on the console"},
			{"", "QEMU exec → exit"},
		} {
			p("| %s | %s | %s |\n", m[1], b.startStats(vTemplate, m[0]).cell("%.0f"), b.startStats(vTemplateShr, m[0]).cell("%.0f"))
		}
	}
	p("\nThe floor's command lines (the kernel options are `hypervisor.VM.Cmdline()`'s, less the `runvirt.*` keys),\n")
	p("QEMU's start alone (the microvm floor's with `-S -qmp stdio`: QEMU quits as soon as it reads QMP's quit)\n")
	p("and the templates' restore (fd 3: the console, a socket pair; fd 4: QMP, a listening socket):\n\n")
	for _, k := range keysSorted(r.Cmdline) {
		p("    %s\n", r.Cmdline[k])
	}
	p("\n")

	// 2. exec.
	b.execSection(p)

	// 3. Footprint.
	if fp := r.Footprint; fp != nil {
		p("## 3. Footprint\n\n")
		p("Host PSS (sum of `Pss` in `/proc/PID/smaps_rollup`) of every host process of an idle sandbox (`sleep` in\n")
		p("microvm + virtio-fs, 256 MiB): the runvirt monitor and everything under it (QEMU, virtiofsd and its sandboxed\n")
		p("child) and the runvirt stand-in, measured %.0f s after the last sandbox started. The floor: a bare QEMU\n", fp.Settle)
		p("(same kernel, machine, memory, kernel options; no devices) whose init sleeps, with anonymous guest RAM\n")
		p("and with a shared memfd as runvirt's.\n")
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
		if len(fp.TemplateMany) > 0 {
			many(fmt.Sprintf("runvirt from a template (`template = true`, 9p), %d idle sandboxes", len(fp.TemplateMany)), fp.TemplateMany, fp.TemplateManyFile)
		}
		if fp.CopyOne > 0 {
			one("floor from the shared-RAM template: idle copy, 1", fp.CopyOne, fp.CopyOneFile)
			many(fmt.Sprintf("floor from the shared-RAM template: idle copies, %d", fp.ManyN), fp.CopyMany, fp.CopyManyFile)
		}
		p("\nThe file-backed part (QEMU's binary and libraries, the mapped vmlinux and initrd) is split with every process\n")
		p("mapping the same files, *other users' QEMUs booting the same build/guest/vmlinux included*, so it moves with the\n")
		p("machine's load; the rest (anonymous and shmem: guest RAM, TCG's code cache, heaps) is the sandbox's own.\n\n")
		if len(fp.TemplateMany) > 0 {
			p("Sandboxes from a template map the guest RAM the template saved (a file on a tmpfs, %.1f MiB of it\n", mib(float64(r.TemplateRAMKiB)))
			p("allocated: the pages the template's guest touched) privately: the pages a copy only reads are that file's, shared by\n")
			p("all copies and counted in their Pss_File; the file itself is held once per configuration, whether copies run or not.\n\n")
		}
		p("Transparent huge pages: host `%s`. QEMU asks for huge pages on anonymous guest RAM (MADV_HUGEPAGE), so a\n", thpSetting())
		p("bare QEMU's touched guest pages are counted in 2 MiB units (AnonHugePages of the single floor QEMU: %.1f MiB);\n", mib(float64(fp.FloorAnonHuge)))
		p("runvirt's virtio-fs sandboxes keep guest RAM in a shared memfd (shmem, which gets no THP here; the sandbox QEMU's\n")
		p("AnonHugePages, %.1f MiB, are its other anonymous memory, e.g. TCG's code buffer), so the memfd floor is the like-for-like one.\n\n", mib(float64(fp.SandboxAnonHuge)))
		p("Floor command lines (idle: `BENCH_IDLE=1` makes the init sleep):\n\n    %s\n    %s\n\n", fp.FloorArgs, fp.MemfdArgs)
		if fp.CopyOne > 0 {
			p("The idle copies are restored as in §1 (*RAM shared*) and left waiting on their console; a copy's guest RAM is a\n")
			p("private mapping of the template's file, so the pages it only reads are that file's page cache, shared with the\n")
			p("other copies and counted in Pss_File (RSS of the one copy: %.1f MiB anonymous, %.1f MiB file-backed).\n\n", mib(float64(fp.CopyRssAnon)), mib(float64(fp.CopyRssFile)))
		}
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

// analysis explains the start-latency gap from the breakdown. The causes
// it names without a number from this run were measured apart, under TCG
// on the machine the report was first written on (initcall_debug,
// GODEBUG=inittrace=1, the agent's debug log); the text says so.
func (b *bench) analysis(w *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	med := func(v, f string) float64 { return b.startStats(v, f).Median }
	stage := func(v, from, to string) float64 { return b.stageStats(v, from, to).Median }
	cell := func(v, from, to string) string { return b.stageStats(v, from, to).cell("%.0f") }
	p("## Where the gap is\n\n")
	wall, floor := med(vRVTrue, ""), med(vFloorMicrovm, "")
	gb, gi := med(vRVTrue, "guest_boot"), med(vFloorMicrovm, "guest_init")
	p("microvm + virtio-fs (the defaults), `runvirt run true` (median %.0f ms) against the microvm floor (median %.0f ms):\n", wall, floor)
	p("a gap of **%.0f ms**. Each stage is computed run by run, then summarised (median [min–max]); the medians of stages\n", wall-floor)
	p("need not add up.\n\n")
	type col struct{ v, floor string }
	cols := []col{{vRVTrue, ""}, {"", vFloorMicrovm}}
	p("| stage | runvirt `true`, microvm | floor, microvm |")
	if b.o.Q35 {
		cols = append(cols, col{vRVQ35True, ""}, col{"", vFloorQ35})
		p(" runvirt `true`, q35 | floor, q35 |")
	}
	p("\n|---|")
	for range cols {
		p("---:|")
	}
	p("\n")
	// row: the stage from → to of runvirt's variants, ffrom → fto of the
	// floors' ("-": the floor has no such stage).
	row := func(name, from, to, ffrom, fto string) {
		p("| %s |", name)
		for _, c := range cols {
			switch {
			case c.v != "":
				p(" %s |", cell(c.v, from, to))
			case fto == "-":
				p(" — |")
			default:
				p(" %s |", cell(c.floor, ffrom, fto))
			}
		}
		p("\n")
	}
	row("guest clock: kernel start → agent ready (runvirt) / init started (floor)", "", "guest_boot", "", "guest_init")
	row("host, around the guest clock: QEMU's start, firmware and early kernel before the guest clock, the news reaching the host (runvirt: agent_ready − guest_boot; floor: wall − guest_init, which also has power-off and QEMU's exit)", "guest_boot", "agent_ready", "guest_init", "")
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
	p("- **Before the guest clock starts.** QEMU's own start with the microvm floor's command line (`-S`, quit over QMP)\n")
	p("  takes %s ms before the guest runs an instruction (with the %d MB vmlinux; without `-kernel` it was measured\n", b.startStats(vQEMUStart, "").cell("%.0f"), b.kernelMB())
	p("  at ~100 ms on this machine); qboot and the kernel's early set-up before CLOCK_BOOTTIME\n")
	p("  starts are not on the guest clock either. With the news reaching the host, that is the second row: %.0f ms for\n", stage(vRVTrue, "guest_boot", "agent_ready"))
	p("  runvirt, %.0f ms for the floor, whose figure also has the power-off and QEMU's exit. runvirt's is longer: it\n", stage(vFloorMicrovm, "guest_init", ""))
	p("  starts QEMU %.0f ms into the boot (`qemu_started`: the monitor and virtiofsd first), its QEMU has more devices\n", med(vRVTrue, "qemu_started"))
	p("  to create and a bigger initramfs to load, and the hello crosses the serial port; this run does not split it further.\n")
	p("- **Guest clock.** The floor's init starts at %.0f ms; runvirt's agent is ready at %.0f ms, %.0f ms later. Before\n", gi, gb, gb-gi)
	p("  /init, runvirt's guest probes the virtio devices the floor has not (measured with `initcall_debug`: virtio_console_init\n")
	p("  ~30 ms, virtio_rng ~17 ms, virtio-mmio ~6 ms) and unpacks a %.1f MB initramfs instead of the floor's %.1f MB; the\n", fileMB(filepath.Join(b.o.Guest, "initrd.img")), fileMB(b.floorRD))
	p("  drivers are built into the minimal guest kernel (`make kernel`), so no module is loaded. After /init, the Go agent\n")
	p("  needs ~40 ms from exec to `main` (measured with `GODEBUG=inittrace=1` on the kernel command line: the last package\n")
	p("  init ends at ~40 ms), then ~70 ms of its own boot (the mounts, the switch to a tmpfs root, cgroups, mounting the\n")
	p("  share, opening the port) before it says hello.\n")
	p("- **Work after the agent is ready** (create + start + run + teardown) costs %.0f ms (median), all on the critical\n", stage(vRVTrue, "agent_ready", "torn_down"))
	p("  path; every host↔agent round trip and every process the guest spawns runs on an emulated CPU. Of the create\n")
	p("  stage's %.0f ms, the guest's create call takes ~90 ms in the guest (measured from the agent's debug log,\n", stage(vRVTrue, "agent_ready", "container_created"))
	p("  `request handled op=create took=`), and parking the spare NIC for late networking (a new network namespace in\n")
	p("  the guest) ~65 ms, side by side with it; the rest is the host's (what `run` did before the boot, the round\n")
	p("  trip). Teardown (%.0f ms): the agent syncs and answers the shutdown and the host\n", stage(vRVTrue, "workload_exited", "torn_down"))
	p("  stops QEMU at once (measured at ~40–50 ms; waiting for the guest's power-off took ~85–110 ms), then removes the\n")
	p("  mounts and the state. `echo hi` (output relayed) took %s ms against `true`'s %s ms.\n", b.startStats(vRVEcho, "").cell("%.0f"), b.startStats(vRVTrue, "").cell("%.0f"))
	p("- **Process starts** are not free on this host (itself a virtual machine): exec and exit of `/bin/true` take\n")
	p("  %s ms here (§1), and the bigger binaries on runvirt's path were measured at ~15–30 ms each. `runvirt run`\n", b.startStats(vHostTrue, "").cell("%.0f"))
	p("  execs four of them (runvirt, its monitor, virtiofsd, QEMU) plus the stand-in; the floor execs one.\n")
	if b.o.Q35 {
		qw, qf := med(vRVQ35True, ""), med(vFloorQ35, "")
		p("- **q35** (`machine = \"q35\"`): runvirt %.0f ms vs its floor %.0f ms (%.2f×). q35 boots through SeaBIOS and the guest\n", qw, qf, qw/qf)
		p("  enumerates PCI: the guest clock at agent ready is %.0f ms vs %.0f ms on microvm, the floor's init %.0f vs %.0f ms.\n",
			med(vRVQ35True, "guest_boot"), gb, med(vFloorQ35, "guest_init"), gi)
	}
	s9, sv := b.startStats(vRV9pTrue, ""), b.startStats(vRVTrue, "")
	p("- **9p vs virtio-fs at start** (microvm): %s vs %s ms wall. The share is mounted once, at boot, and both\n", s9.cell("%.0f"), sv.cell("%.0f"))
	p("  file systems are built into the kernel; virtio-fs adds a host process (virtiofsd, sandboxed) and its vhost-user\n")
	p("  set-up where 9p is served by QEMU itself. Guest clock at agent ready: 9p %.0f vs virtio-fs %.0f ms; host side\n", med(vRV9pTrue, "guest_boot"), gb)
	p("  around it (agent_ready − guest_boot): 9p %.0f vs virtio-fs %.0f ms.\n", stage(vRV9pTrue, "guest_boot", "agent_ready"), stage(vRVTrue, "guest_boot", "agent_ready"))
	if t, ts, fl := b.startStats(vTemplate, ""), b.startStats(vTemplateShr, ""), b.startStats(vFloorMicrovm, ""); t.N > 0 && ts.N > 0 && fl.N > 0 {
		p("- **Starting from a template** instead of booting (§1, *From a template*): the bare floor guest, restored from\n")
		p("  a saved template and run to its power off, takes %.0f ms with its RAM shared from the template's file and %.0f ms\n", ts.Median, t.Median)
		p("  with its RAM loaded from the state, against %.0f ms to boot. Sharing the RAM leaves only the device state to load\n", fl.Median)
		p("  (done %.0f ms after QEMU is up); loading it (%.1f MB) took %.0f ms, and with QEMU 7.2 it also touches the whole\n",
			stage(vTemplateShr, "qemu_ready", "restored"), float64(b.res.TemplateBytes[tmplCopy])/1e6, stage(vTemplate, "qemu_ready", "restored"))
		p("  guest RAM: every page the stream says is zero is read to check it, which maps it (QEMU's RSS once restored:\n")
		p("  %.0f MiB for the 256 MiB guest, against %.0f MiB for a copy sharing the template's RAM).",
			mib(b.startStats(vTemplate, "rss_restored_kib").Median), mib(b.startStats(vTemplateShr, "rss_restored_kib").Median))
		if fp := b.res.Footprint; fp != nil && len(fp.CopyMany) > 0 && len(fp.FloorMany) > 0 {
			c, f := summarize(fp.CopyMany), summarize(fp.FloorMany)
			p("\n  Idle, %d shared-RAM copies cost %.1f MiB PSS each against %.1f MiB for %d booted bare QEMUs (§3).",
				len(fp.CopyMany), mib(c.Median), mib(f.Median), len(fp.FloorMany))
		}
		p("\n")
	}
	if nic, no := b.startStats(vRV9pTrue, ""), b.startStats(vRV9pNoNIC, ""); nic.N > 0 && no.N > 0 {
		p("- **The spare NIC** (`late_network`, on by default, so that docker can attach a network after the VM booted):\n")
		p("  with 9p, `runvirt run true` takes %.0f ms with it and %.0f ms without it (`late_network = false`): a tap and a\n", nic.Median, no.Median)
		p("  network namespace made on the host, one more virtio device for the guest to probe, and the NIC parked in a\n")
		p("  namespace of its own in the guest (the create stage: %.0f vs %.0f ms).\n",
			stage(vRV9pTrue, "agent_ready", "container_created"), stage(vRV9pNoNIC, "agent_ready", "container_created"))
	}
	if rt, rc := b.startStats(vRVTemplate, ""), b.startStats(vRV9pTrue, ""); rt.N > 0 && rc.N > 0 {
		p("- **runvirt from a template** (`template = true`, a prototype: docs/design-templates.md) does this for a sandbox:\n")
		p("  `runvirt run true` takes %.0f ms against %.0f ms for the same configuration booted (9p) and %.0f ms for\n", rt.Median, rc.Median, med(vRVTrue, ""))
		p("  the default; the agent is ready %.0f ms after the boot started instead of %.0f ms. The create stage is longer in\n", med(vRVTemplate, "agent_ready"), med(vRV9pTrue, "agent_ready"))
		p("  a copy (%.0f vs %.0f ms): its QEMU starts with an empty translated-code cache (a booted VM translated much of that\n",
			stage(vRVTemplate, "agent_ready", "container_created"), stage(vRV9pTrue, "agent_ready", "container_created"))
		p("  code while booting), and each guest page touched first is a fault on the template's RAM file. Templates need 9p\n")
		p("  (QEMU 7.2 cannot save a virtio-fs device, and vhost-user needs shared guest RAM, which a private copy is not).\n")
	}
	ex, exrc := summarize(b.res.Exec[eRunvirt]), summarize(b.res.Exec[eRunc])
	p("- **exec**: %.0f ms vs runc's %.0f ms (%.1f×). A runvirt exec is a new runvirt process, the state and lock under\n", ex.Median, exrc.Median, ex.Median/exrc.Median)
	p("  `--root`, a connection to the agent over the serial port, the guest spawning the process into the container's\n")
	p("  namespaces on an emulated CPU, and its exit status coming back; runc does the same setns+exec natively.\n")
	p("- **runc** starts and runs `true` in %.0f ms: the VM's cost is the whole boot, so the floor, not runc, is the\n", med(vRuncTrue, ""))
	p("  meaningful reference for start latency; exec into a running VM has no boot in it and is compared with runc directly.\n")
	if fp := b.res.Footprint; fp != nil && fp.FloorOne > 0 {
		q := float64(fp.OneByKind["qemu"])
		own := func(total, file int) float64 { return mib(float64(total - file)) }
		p("- **Memory**: one idle sandbox's own memory (PSS − file-backed PSS, which moves with who else maps the same files)\n")
		p("  is %.1f MiB, of a PSS of %.1f MiB of which QEMU is %.1f MiB; a bare idle QEMU's is %.1f MiB with anonymous guest\n", own(fp.OneTotal, fp.OneFile), mib(float64(fp.OneTotal)), mib(q), own(fp.FloorOne, fp.FloorOneFile))
		p("  RAM (huge pages) and %.1f MiB with a memfd like runvirt's. The sandbox's QEMU holds %.1f MiB of anonymous\n", own(fp.MemfdOne, fp.MemfdOneFile), mib(float64(fp.SandboxRssAnon)))
		p("  memory (RSS; %.1f MiB of it AnonHugePages) beside %.1f MiB of guest RAM touched in the memfd; the memfd floor's\n", mib(float64(fp.SandboxAnonHuge)), mib(float64(fp.SandboxRssShmem)))
		p("  QEMU %.1f MiB anonymous beside %.1f MiB of memfd. Most of either QEMU's anonymous memory is TCG's translated-code\n", mib(float64(fp.MemfdRssAnon)), mib(float64(fp.MemfdRssShmem)))
		p("  cache, which grows with the code the guest ran (there is none under KVM). Capping it (`-accel tcg,tb-size=16`)\n")
		p("  was measured to save ~18 MB but to slow the boot from ~1.3 s to ~2.2 s (code translated again), so runvirt\n")
		p("  does not.")
		if used, total, ok := freeUsed(fp.Free); ok {
			p(" Inside the guest, `free` counts %s MiB used of %s MiB at idle (§3).", used, total)
		}
		p("\n")
		p("  Both QEMUs map the kernel image (the %d MB uncompressed vmlinux, privately) and the initrd: file pages, shared\n", b.kernelMB())
		p("  between QEMUs and so split by PSS, which is most of why the per-VM figure drops with %d of them.\n", fp.ManyN)
		p("  The runvirt monitor and stand-in are Go processes: %.1f + %.1f MiB; virtiofsd %.1f MiB.\n",
			mib(float64(fp.OneByKind["runvirt monitor"])), mib(float64(fp.OneByKind["runvirt stand-in"])), mib(float64(fp.OneByKind["virtiofsd"])))
	}
	p("\n")
}

// freeUsed is the used and total columns of `free -m`'s Mem line.
func freeUsed(free string) (used, total string, ok bool) {
	for _, l := range strings.Split(free, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Mem:" {
			return f[2], f[1], true
		}
	}
	return "", "", false
}

// fileMB is a file's size in MB (0 if it is not there).
func fileMB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / 1e6
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
