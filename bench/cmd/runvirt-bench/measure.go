package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const cmdTimeout = 3 * time.Minute

// timed runs cmd with a timeout and returns its wall time and stdout.
// stdout and stderr are files, not pipes: a detached container (runc's
// init, runvirt's stand-in) keeps them open after the command exits.
func timed(cmd *exec.Cmd) (time.Duration, string, error) {
	outf, err := os.CreateTemp("", "rvb-out-")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(outf.Name())
	defer outf.Close()
	errf, err := os.CreateTemp("", "rvb-err-")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = outf, errf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(cmdTimeout):
		cmd.Process.Kill()
		err = fmt.Errorf("timed out after %s", cmdTimeout)
		<-done
	}
	d := time.Since(t0)
	out, _ := os.ReadFile(outf.Name())
	if err != nil {
		errb, _ := os.ReadFile(errf.Name())
		return d, string(out), fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(errb)))
	}
	return d, string(out), nil
}

// debugTimings reads the milestones runvirt --debug logs (JSON).
func debugTimings(path string) map[string]float64 {
	f := make(map[string]float64)
	fh, err := os.Open(path)
	if err != nil {
		return f
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		if !strings.HasPrefix(msg, "sandbox booted") && !strings.HasPrefix(msg, "run timing") {
			continue
		}
		for k, v := range m {
			if n, ok := v.(float64); ok {
				f[k] = n
			}
		}
	}
	return f
}

// Start-latency variants, in report order. microvm is runvirt's default
// machine, so its variants are the primary ones; q35 is measured beside it.
const (
	vHostTrue     = "host: exec `/bin/true`"
	vRuncTrue     = "runc run `true`"
	vRuncEcho     = "runc run `echo hi`"
	vQEMUStart    = "QEMU alone: start with `-S`, quit over QMP (microvm floor's command line)"
	vFloorMicrovm = "floor: bare QEMU boot → power off (microvm)"
	vTemplate     = "floor from a template, its RAM loaded: bare QEMU restore of the booted floor guest → power off (microvm)"
	vTemplateShr  = "floor from a template, its RAM shared: the same, RAM mapped from the template's file (microvm)"
	vRVTrue       = "runvirt run `true` (microvm, virtio-fs)"
	vRVEcho       = "runvirt run `echo hi` (microvm, virtio-fs)"
	vRV9pTrue     = "runvirt run `true` (microvm, 9p)"
	vRV9pNoNIC    = "runvirt run `true` (microvm, 9p, no NIC: `late_network = false`)"
	vRVTemplate   = "runvirt run `true` (microvm, 9p, from a template: `template = true`)"
	vFloorQ35     = "floor: bare QEMU boot → power off (q35)"
	vRVQ35True    = "runvirt run `true` (q35, virtio-fs)"
)

// Configs (see setup): the primary one is runvirt's default machine.
const (
	cfgPrimary = "microvm-virtiofs"
	cfg9p      = "microvm-9p"
	cfgQ35     = "q35-virtiofs"
	// 9p without the spare NIC (what the NIC costs), and 9p from a
	// template (cfg9p's booted twin).
	cfg9pNoNIC  = "microvm-9p-nonic"
	cfgTemplate = "microvm-9p-template"
)

func (b *bench) startLatency() {
	log.Printf("start latency: %d rounds", b.o.Reps)
	type variant struct {
		name string
		run  func() (time.Duration, map[string]float64, error)
	}
	runvirtRun := func(cfg string, args []string, want string) func() (time.Duration, map[string]float64, error) {
		return func() (time.Duration, map[string]float64, error) {
			if err := b.writeSpec(args); err != nil {
				return 0, nil, err
			}
			id := b.id("st")
			lf := filepath.Join(b.work, id+".log.json")
			d, out, err := timed(b.runvirt("--log", lf, "--log-format", "json", "--debug", "run", "--config", b.cfg[cfg], "--bundle", b.bundle, id))
			if err == nil && strings.TrimSpace(out) != want {
				err = fmt.Errorf("runvirt run %v printed %q", args, out)
			}
			f := debugTimings(lf)
			os.Remove(lf)
			return d, f, err
		}
	}
	runcRun := func(args []string, want string) func() (time.Duration, map[string]float64, error) {
		return func() (time.Duration, map[string]float64, error) {
			if err := b.writeSpec(args); err != nil {
				return 0, nil, err
			}
			d, out, err := timed(b.runc("run", "--bundle", b.bundle, b.id("rc")))
			if err == nil && strings.TrimSpace(out) != want {
				err = fmt.Errorf("runc run %v printed %q", args, out)
			}
			return d, nil, err
		}
	}
	floor := func(machine string) func() (time.Duration, map[string]float64, error) {
		return func() (time.Duration, map[string]float64, error) {
			f := floorVM{QEMU: b.o.QEMU, Kernel: b.kernel(), Initrd: b.floorRD, Machine: machine,
				Accel: b.accel, MemoryMiB: 256, Console: consolePath(b.work, "floor-"+machine)}
			b.res.Cmdline["floor "+machine] = b.o.QEMU + " " + shellJoin(f.args())
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
			defer cancel()
			d, g, err := f.boot(ctx)
			return d, map[string]float64{"guest_init": g}, err
		}
	}
	hostTrue := func() (time.Duration, map[string]float64, error) {
		d, _, err := timed(exec.Command("/bin/true"))
		return d, nil, err
	}
	vs := []variant{
		{vHostTrue, hostTrue},
		{vRuncTrue, runcRun([]string{"true"}, "")},
		{vRuncEcho, runcRun([]string{"echo", "hi"}, "hi")},
		{vQEMUStart, b.qemuStartOnly},
		{vFloorMicrovm, floor("microvm")},
		{vTemplate, b.templateRestore(tmplCopy)},
		{vTemplateShr, b.templateRestore(tmplShared)},
		{vRVTrue, runvirtRun(cfgPrimary, []string{"true"}, "")},
		{vRVEcho, runvirtRun(cfgPrimary, []string{"echo", "hi"}, "hi")},
		{vRV9pTrue, runvirtRun(cfg9p, []string{"true"}, "")},
		{vRV9pNoNIC, runvirtRun(cfg9pNoNIC, []string{"true"}, "")},
		{vRVTemplate, runvirtRun(cfgTemplate, []string{"true"}, "")},
	}
	if b.o.Q35 {
		vs = append(vs,
			variant{vFloorQ35, floor("q35")},
			variant{vRVQ35True, runvirtRun(cfgQ35, []string{"true"}, "")})
	}
	for _, v := range vs {
		b.res.StartOrder = append(b.res.StartOrder, v.name)
		b.res.Start[v.name] = &startResult{}
	}
	// Round 0 warms the page cache (kernel, initrd, binaries) and is not
	// counted. Rounds interleave the variants so that load from other users
	// of the machine spreads over all of them.
	for round := 0; round <= b.o.Reps; round++ {
		for _, v := range vs {
			d, f, err := v.run()
			if err != nil {
				b.fail("start %s: %v", v.name, err)
				continue
			}
			if round == 0 {
				continue
			}
			if f == nil {
				f = make(map[string]float64)
			}
			f["wall"], f["round"] = ms(d), float64(round)
			r := b.res.Start[v.name]
			r.Samples = append(r.Samples, f)
		}
		if round > 0 {
			log.Printf("  round %d/%d done (load %s)", round, b.o.Reps, loadavg())
		}
		b.sampleLoad()
	}
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " '\"$,") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

// footprint is host PSS of idle sandboxes and of bare idle QEMUs.
type footprint struct {
	Settle float64
	// One sandbox alone: PSS (KiB) by process kind, and the processes.
	OneByKind  map[string]int
	OneProcs   []string
	OneTotal   int
	ManyN      int
	ManyTotals []float64 // KiB per sandbox, with ManyN running
	ManyByKind map[string]int
	// Bare idle QEMUs: anonymous guest RAM, and a shared memfd as
	// runvirt's virtio-fs sandboxes have.
	FloorOne        int
	FloorMany       []float64
	FloorAnonHuge   int // AnonHugePages of FloorOne, KiB
	FloorArgs       string
	MemfdOne        int
	MemfdMany       []float64
	MemfdArgs       string
	SandboxAnonHuge int // AnonHugePages of the one sandbox's QEMU, KiB
	// RSS of the one sandbox's QEMU and of the single memfd floor QEMU,
	// KiB: anonymous (heaps, TCG's translated-code cache) and shmem (the
	// guest RAM memfd).
	SandboxRssAnon, SandboxRssShmem int
	MemfdRssAnon, MemfdRssShmem     int
	// The file-backed part of each PSS above (Pss_File: the QEMU binary,
	// libraries, the mapped kernel and initrd), shared with every process
	// that maps the same files, other users' QEMUs included.
	OneFile, FloorOneFile, MemfdOneFile    int
	ManyFile, FloorManyFile, MemfdManyFile []float64
	Meminfo                                map[string]int
	// Idle copies of the shared-RAM template floor (template.go): PSS
	// and its file-backed part of the one and of each of the many, and
	// the one's RSS of anonymous memory and of the template's RAM file.
	CopyOne, CopyOneFile     int
	CopyMany, CopyManyFile   []float64
	CopyRssAnon, CopyRssFile int
	CopyArgs                 string
	// n idle runvirt sandboxes started from a template (cfgTemplate): PSS
	// per sandbox and its file-backed part.
	TemplateMany, TemplateManyFile []float64
	Free                           string
}

// sandboxPSS is the PSS of a sandbox's host processes: the total, by kind
// a line per process, and the file-backed part of the total.
func (b *bench) sandboxPSS(id string) (total, file int, byKind map[string]int, procs []string, err error) {
	roots, err := sandboxPids(b.root, id)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	byKind = make(map[string]int)
	for _, p := range tree(listProcs(), roots...) {
		kb, err := pssKiB(p.Pid)
		if err != nil {
			continue // a zombie
		}
		k := kind(p)
		byKind[k] += kb
		total += kb
		f, _ := rollup(p.Pid, "Pss_File")
		file += f
		procs = append(procs, fmt.Sprintf("%s (pid %d): %d KiB", k, p.Pid, kb))
	}
	return total, file, byKind, procs, nil
}

func (b *bench) footprint() {
	n := b.o.Sandboxes
	log.Printf("footprint: 1 and %d idle sandboxes, and bare idle QEMUs", n)
	fp := &footprint{Settle: b.o.Settle.Seconds(), ManyN: n}
	b.res.Footprint = fp
	if err := b.writeSpec([]string{"sleep", "1000000"}); err != nil {
		b.fail("footprint: %v", err)
		return
	}
	set := &sandboxSet{b: b}
	defer set.deleteAll()
	start := func() bool { return set.start(cfgPrimary, "fp") }
	if !start() {
		return
	}
	time.Sleep(b.o.Settle)
	total, file, byKind, procs, err := b.sandboxPSS(set.ids[0])
	fp.OneFile = file
	if err != nil {
		b.fail("footprint: %v", err)
		return
	}
	fp.OneTotal, fp.OneByKind, fp.OneProcs = total, byKind, procs
	if roots, err := sandboxPids(b.root, set.ids[0]); err == nil {
		for _, p := range tree(listProcs(), roots...) {
			if kind(p) == "qemu" {
				fp.SandboxAnonHuge, _ = rollup(p.Pid, "AnonHugePages")
				fp.SandboxRssAnon, _ = statusKiB(p.Pid, "RssAnon")
				fp.SandboxRssShmem, _ = statusKiB(p.Pid, "RssShmem")
			}
		}
	}
	// What the workload sees.
	if _, out, err := timed(b.runvirt("exec", set.ids[0], "cat", "/proc/meminfo")); err == nil {
		fp.Meminfo = make(map[string]int)
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.Atoi(f[1])
				fp.Meminfo[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	} else {
		b.fail("footprint: meminfo: %v", err)
	}
	if _, out, err := timed(b.runvirt("exec", set.ids[0], "free", "-m")); err == nil {
		fp.Free = strings.TrimRight(out, "\n")
	}
	for len(set.ids) < n {
		if !start() {
			return
		}
	}
	time.Sleep(b.o.Settle)
	fp.ManyTotals, fp.ManyFile, fp.ManyByKind = set.measure()
	b.sampleLoad()
	set.deleteAll()

	// The floor: bare QEMUs of the same kernel and memory, idle.
	for _, memfd := range []bool{false, true} {
		r := b.idleFloors(n, memfd)
		if memfd {
			fp.MemfdOne, fp.MemfdMany, fp.MemfdArgs = r.one, r.many, r.args
			fp.MemfdOneFile, fp.MemfdManyFile = r.oneFile, r.manyFile
			fp.MemfdRssAnon, fp.MemfdRssShmem = r.rssAnon, r.rssShmem
		} else {
			fp.FloorOne, fp.FloorMany, fp.FloorArgs, fp.FloorAnonHuge = r.one, r.many, r.args, r.huge
			fp.FloorOneFile, fp.FloorManyFile = r.oneFile, r.manyFile
		}
	}
	fp.TemplateMany, fp.TemplateManyFile = b.idleSandboxes(cfgTemplate, n)
	c := b.idleCopies(n)
	fp.CopyOne, fp.CopyOneFile, fp.CopyMany, fp.CopyManyFile = c.one, c.oneFile, c.many, c.manyFile
	fp.CopyRssAnon, fp.CopyRssFile, fp.CopyArgs = c.rssAnon, c.rssFile, c.args
	b.sampleLoad()
}

type idleResult struct {
	one, oneFile, huge         int
	rssAnon, rssShmem, rssFile int
	many, manyFile             []float64
	args                       string
}

// idleFloors measures 1 and then n bare idle QEMUs (see measureIdle).
func (b *bench) idleFloors(n int, memfd bool) idleResult {
	var vms []*exec.Cmd
	var args string
	defer func() {
		for _, c := range vms {
			c.Process.Kill()
			c.Wait()
		}
	}()
	r := b.measureIdle(n, func(i int) (int, bool) {
		f := floorVM{QEMU: b.o.QEMU, Kernel: b.kernel(), Initrd: b.floorRD, Machine: "microvm",
			Accel: b.accel, MemoryMiB: 256, Idle: true, MemFD: memfd,
			Console: consolePath(b.work, fmt.Sprintf("idle-%v-%d", memfd, i))}
		args = b.o.QEMU + " " + shellJoin(f.args())
		c, err := f.startIdle(cmdTimeout)
		if err != nil {
			b.fail("footprint: %v", err)
			return 0, false
		}
		vms = append(vms, c)
		return c.Process.Pid, true
	})
	r.args = args
	return r
}

// measureIdle starts n idle VMs, one by one, with start(i), which returns
// the pid of VM i's QEMU. After the settle time it measures the first VM
// alone: PSS and its file-backed part, AnonHugePages, RSS of anonymous,
// shmem and file pages; then, with all n started and settled, the PSS and
// file-backed PSS of each.
func (b *bench) measureIdle(n int, start func(i int) (pid int, ok bool)) (r idleResult) {
	var pids []int
	add := func(i int) bool {
		pid, ok := start(i)
		if ok {
			pids = append(pids, pid)
		}
		return ok
	}
	if !add(0) {
		return r
	}
	time.Sleep(b.o.Settle)
	r.one, _ = pssKiB(pids[0])
	r.oneFile, _ = rollup(pids[0], "Pss_File")
	r.huge, _ = rollup(pids[0], "AnonHugePages")
	r.rssAnon, _ = statusKiB(pids[0], "RssAnon")
	r.rssShmem, _ = statusKiB(pids[0], "RssShmem")
	r.rssFile, _ = statusKiB(pids[0], "RssFile")
	for i := 1; i < n; i++ {
		if !add(i) {
			return r
		}
	}
	time.Sleep(b.o.Settle)
	for _, pid := range pids {
		if kb, err := pssKiB(pid); err == nil {
			r.many = append(r.many, float64(kb))
			f, _ := rollup(pid, "Pss_File")
			r.manyFile = append(r.manyFile, float64(f))
		}
	}
	return r
}

// I/O variants.
const (
	ioRunc     = "runc"
	ioVirtiofs = "runvirt virtio-fs (microvm)"
	io9p       = "runvirt 9p (microvm)"
)

var ioTests = []string{"seqwrite", "seqread", "randwrite", "randread"}

func (b *bench) ioBench() {
	log.Printf("I/O: %d MiB files, %d reps", b.o.IOMiB, b.o.IOReps)
	bind := filepath.Join(b.work, "bind")
	iodir := filepath.Join(b.rootfs, "iotest")
	defer os.RemoveAll(iodir)
	defer os.RemoveAll(bind)
	size := b.o.IOMiB << 20
	buf := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for _, dir := range []string{iodir, bind} {
		if err := os.MkdirAll(dir, 0o777); err != nil {
			b.fail("io: %v", err)
			return
		}
		for rep := 0; rep < b.o.IOReps; rep++ {
			for _, name := range []string{"seq", "rw", "rr"} {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.dat", name, rep)), buf, 0o666); err != nil {
					b.fail("io: %v", err)
					return
				}
			}
		}
	}
	io, err := os.ReadFile(b.o.BenchIO)
	if err != nil {
		b.fail("io: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.rootfs, "bench-io"), io, 0o755); err != nil {
		b.fail("io: %v", err)
		return
	}
	defer os.Remove(filepath.Join(b.rootfs, "bench-io"))
	args := []string{"/bench-io", "-reps", strconv.Itoa(b.o.IOReps), "-mib", strconv.Itoa(b.o.IOMiB), "/iotest", "/mnt/bind"}
	mount := map[string]any{"destination": "/mnt/bind", "type": "bind", "source": bind, "options": []string{"rbind", "rw"}}
	if err := b.writeSpec(args, mount); err != nil {
		b.fail("io: %v", err)
		return
	}
	for _, v := range []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{ioRunc, func() *exec.Cmd { return b.runc("run", "--bundle", b.bundle, b.id("iorc")) }},
		{ioVirtiofs, func() *exec.Cmd {
			return b.runvirt("run", "--config", b.cfg[cfgPrimary], "--bundle", b.bundle, b.id("iovfs"))
		}},
		{io9p, func() *exec.Cmd {
			return b.runvirt("run", "--config", b.cfg[cfg9p], "--bundle", b.bundle, b.id("io9p"))
		}},
	} {
		b.res.IOOrder = append(b.res.IOOrder, v.name)
		t0 := time.Now()
		_, out, err := timed(v.cmd())
		if err != nil {
			b.fail("io %s: %v", v.name, err)
			continue
		}
		m := make(map[string][]float64)
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "IO ") {
				continue
			}
			kv := make(map[string]string)
			for _, f := range strings.Fields(l)[1:] {
				k, val, _ := strings.Cut(f, "=")
				kv[k] = val
			}
			loc := "rootfs"
			if kv["dir"] == "/mnt/bind" {
				loc = "bind mount"
			}
			bytes, _ := strconv.ParseFloat(kv["bytes"], 64)
			ops, _ := strconv.ParseFloat(kv["ops"], 64)
			ns, _ := strconv.ParseFloat(kv["ns"], 64)
			sec := ns / 1e9
			if sec <= 0 {
				continue
			}
			if strings.HasPrefix(kv["test"], "seq") {
				m[loc+"/"+kv["test"]] = append(m[loc+"/"+kv["test"]], bytes/(1<<20)/sec)
			} else {
				m[loc+"/"+kv["test"]] = append(m[loc+"/"+kv["test"]], ops/sec)
			}
		}
		b.res.IO[v.name] = m
		log.Printf("  %s: %d results in %.1f s", v.name, len(m), time.Since(t0).Seconds())
	}
	b.sampleLoad()
}

// keysSorted returns a map's keys in order.
func keysSorted[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// idleSandboxes starts n idle sandboxes with a config and returns each
// one's PSS and its file-backed part, after the settle time.
func (b *bench) idleSandboxes(cfg string, n int) (totals, files []float64) {
	if err := b.writeSpec([]string{"sleep", "1000000"}); err != nil {
		b.fail("footprint: %v", err)
		return
	}
	set := &sandboxSet{b: b}
	defer set.deleteAll()
	for len(set.ids) < n {
		if !set.start(cfg, "fpt") {
			return
		}
	}
	time.Sleep(b.o.Settle)
	totals, files, _ = set.measure()
	return
}

// sandboxSet is idle sandboxes started for a measurement, deleted after it.
type sandboxSet struct {
	b   *bench
	ids []string
}

// start runs one more idle sandbox (the bundle's spec) with config cfg.
func (s *sandboxSet) start(cfg, prefix string) bool {
	id := s.b.id(prefix)
	if _, _, err := timed(s.b.runvirt("run", "-d", "--config", s.b.cfg[cfg], "--bundle", s.b.bundle, id)); err != nil {
		s.b.fail("footprint: start sandbox (%s): %v", cfg, err)
		return false
	}
	s.ids = append(s.ids, id)
	return true
}

// measure is each sandbox's PSS and its file-backed part, and the sum of
// their PSS by process kind.
func (s *sandboxSet) measure() (totals, files []float64, byKind map[string]int) {
	byKind = make(map[string]int)
	for _, id := range s.ids {
		t, file, k, _, err := s.b.sandboxPSS(id)
		if err != nil {
			s.b.fail("footprint: %v", err)
			continue
		}
		totals = append(totals, float64(t))
		files = append(files, float64(file))
		for kk, v := range k {
			byKind[kk] += v
		}
	}
	return totals, files, byKind
}

func (s *sandboxSet) deleteAll() {
	for _, id := range s.ids {
		s.b.runvirt("delete", "--force", id).Run()
	}
	s.ids = nil
}
