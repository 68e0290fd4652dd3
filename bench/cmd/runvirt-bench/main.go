// Command runvirt-bench measures runvirt side by side with runc and with a
// bare QEMU boot of the same kernel (the floor), and writes BENCHMARKS.md:
// start latency (with runvirt's own breakdown), exec latency, host memory
// per idle sandbox, and file I/O through virtio-fs, 9p and runc.
//
// Run it as root through `make bench`, which builds what it needs.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/runvirt/runvirt/hypervisor"
	"github.com/runvirt/runvirt/internal/testutil"
)

type options struct {
	Runvirt, Runc, QEMU, Guest, BenchInit, BenchIO string
	BenchNet                                       string
	Out, JSONOut                                   string
	Work                                           string
	Suite, Only                                    string
	Reps, ExecReps, Sandboxes, IOReps, IOMiB       int
	NetReps, NetSeconds, NetRoundTrips             int
	Settle, ExecIdle                               time.Duration
	Q35, Keep                                      bool
}

// bench holds what one run needs and what it found.
// portable writes the report's paths as the reader will see them: the
// repository's relative to its root, the run's work directory as $WORK.
func (b *bench) portable(s string) string {
	if wd, err := os.Getwd(); err == nil {
		s = strings.ReplaceAll(s, wd+"/", "")
	}
	return strings.ReplaceAll(s, b.work, "$WORK")
}

type bench struct {
	o        options
	work     string
	root     string // runvirt --root
	rcRoot   string // runc --root
	bundle   string
	rootfs   string
	baseSpec map[string]any
	cfg      map[string]string // variant -> config file
	accel    string
	floorRD  string
	tmplDir  string // runvirt's template_dir
	seq      int
	res      results
	net      map[string]netResult // the network suite's, by runtime
	started  time.Time
}

// results is everything measured; it is also written as JSON.
type results struct {
	Date, Host            string
	Facts                 [][2]string
	LoadBefore, LoadAfter string
	ForeignQEMUs          []int
	Start                 map[string]*startResult
	StartOrder            []string
	Exec                  map[string][]float64
	ExecCPU               map[string]*execCPU  // by exec variant
	ExecBreak             map[string][]float64 // the commands that split runvirt's exec time, ms
	Footprint             *footprint
	IO                    map[string]map[string][]float64 // variant -> "loc/test" -> MiB/s or IOPS
	IOOrder               []string
	Errors                []string
	Duration              float64
	Cmdline               map[string]string
	TemplateBytes         map[string]int64 // the saved template floor VMs' state, by shape
	TemplateRAMKiB        int64            // runvirt's template: its RAM file's allocated size
}

// startResult is one start-latency variant: one map per counted run, with
// the wall time ("wall", ms), the round it ran in ("round") and whatever
// runvirt's debug log or the floor's console gave.
type startResult struct {
	Samples []map[string]float64
}

func main() {
	var o options
	flag.StringVar(&o.Runvirt, "runvirt", "bin/runvirt", "runvirt binary")
	flag.StringVar(&o.Runc, "runc", "runc", "runc binary")
	flag.StringVar(&o.QEMU, "qemu", "qemu-system-x86_64", "QEMU binary (for the floor)")
	flag.StringVar(&o.Guest, "guest", "build/guest", "guest image directory (vmlinux, initrd.img)")
	flag.StringVar(&o.BenchInit, "bench-init", "build/bench/bench-init", "static init of the floor guest")
	flag.StringVar(&o.BenchIO, "bench-io", "build/bench/bench-io", "static I/O workload")
	flag.StringVar(&o.Out, "out", "BENCHMARKS.md", "report to write")
	flag.StringVar(&o.JSONOut, "json", "build/bench/results.json", "raw results to write")
	flag.StringVar(&o.Work, "work", "", "work directory (default: a new one under /tmp)")
	flag.IntVar(&o.Reps, "reps", 11, "repetitions of each start-latency variant")
	flag.IntVar(&o.ExecReps, "exec-reps", 50, "repetitions of each exec")
	flag.DurationVar(&o.ExecIdle, "exec-idle", 5*time.Second, "idle window before the execs, for the sandbox's background CPU")
	flag.IntVar(&o.Sandboxes, "sandboxes", 10, "sandboxes for the many-sandbox footprint")
	flag.IntVar(&o.IOReps, "io-reps", 3, "repetitions of each I/O test")
	flag.IntVar(&o.IOMiB, "io-mib", 32, "I/O file size in MiB")
	flag.DurationVar(&o.Settle, "settle", 5*time.Second, "idle time before memory is measured")
	flag.BoolVar(&o.Q35, "q35", true, "also measure machine = q35 (start latency, beside the default microvm)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.Suite, "suite", "start", `what to measure: "start" (start, exec, footprint, I/O) or "network"`)
	flag.StringVar(&o.BenchNet, "bench-net", "build/bench/bench-net", "static network workload (network suite)")
	flag.IntVar(&o.NetReps, "net-reps", 3, "repetitions of each network measurement")
	flag.IntVar(&o.NetSeconds, "net-seconds", 3, "seconds of each TCP stream")
	flag.IntVar(&o.NetRoundTrips, "net-round-trips", 2000, "round trips of each latency measurement")
	flag.StringVar(&o.Only, "only", "", `run only this measurement of the start suite, "exec", and print its section instead of writing -out`)
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	if o.Only != "" && (o.Only != "exec" || o.Suite != "start") {
		log.Fatalf("-only %q: want exec (of -suite start)", o.Only)
	}
	// A partial run keeps its raw results out of the full run's file
	// unless told where to write them.
	jsonSet := false
	flag.Visit(func(f *flag.Flag) { jsonSet = jsonSet || f.Name == "json" })
	if os.Geteuid() != 0 {
		log.Fatal("run as root (sudo make bench)")
	}
	b := &bench{o: o, started: time.Now()}
	if err := b.setup(); err != nil {
		log.Fatal(err)
	}
	defer b.cleanup()
	b.res.LoadBefore = loadavg()
	report := b.report
	switch {
	case o.Only == "exec" && o.Suite == "start":
		b.sampleLoad()
		b.execLatency()
		report = b.onlyReport
	case o.Suite == "start":
		b.sampleLoad()
		b.startLatency()
		b.execLatency()
		b.footprint()
		b.templateRAM()
		b.ioBench()
	case o.Suite == "network":
		b.networkBench()
		report = b.networkReport
	default:
		log.Fatalf("-suite %q: want start or network", o.Suite)
	}
	b.res.LoadAfter = loadavg()
	b.res.Duration = time.Since(b.started).Seconds()
	if o.Suite == "start" && (o.Only == "" || jsonSet) {
		if err := b.writeJSON(); err != nil {
			log.Print(err)
		}
	}
	if o.Only != "" {
		// A part of the report: it must not replace the whole one.
		fmt.Print(b.portable(report()))
		return
	}
	if err := os.WriteFile(o.Out, []byte(b.portable(report())), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s (%s in all)", o.Out, time.Since(b.started).Round(time.Second))
}

func (b *bench) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	log.Print("ERROR ", msg)
	b.res.Errors = append(b.res.Errors, msg)
}

// sampleLoad notes how many QEMUs of other users run right now.
func (b *bench) sampleLoad() {
	n := 0
	for _, p := range listProcs() {
		if strings.HasPrefix(p.Comm, "qemu-system") && !strings.Contains(p.Args, b.work) {
			n++
		}
	}
	b.res.ForeignQEMUs = append(b.res.ForeignQEMUs, n)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func (b *bench) setup() error {
	o := &b.o
	for _, p := range []*string{&o.Runvirt, &o.Guest, &o.BenchInit, &o.BenchIO, &o.Out, &o.JSONOut} {
		*p = abs(*p)
	}
	kernel, initrd := testutil.GuestImage(o.Guest)
	need := []string{o.Runvirt, initrd}
	if o.Only == "" {
		need = append(need, o.BenchInit, o.BenchIO)
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%v (run `make all` first, or `make bench`)", err)
		}
	}
	for _, p := range []*string{&o.Runc, &o.QEMU} {
		lp, err := exec.LookPath(*p)
		if err != nil {
			return fmt.Errorf("%s: %v", *p, err)
		}
		*p = lp
	}
	var err error
	b.work = o.Work
	if b.work == "" {
		// Short: unix socket paths under --root have a length limit.
		if b.work, err = os.MkdirTemp("/tmp", "rvb-"); err != nil {
			return err
		}
	}
	b.root = filepath.Join(b.work, "rv")
	b.rcRoot = filepath.Join(b.work, "rc")
	b.bundle = filepath.Join(b.work, "bundle")
	b.rootfs = filepath.Join(b.bundle, "rootfs")
	log.Printf("work directory %s", b.work)
	if err := makeBusyboxRootfs(b.rootfs); err != nil {
		return err
	}
	if o.Suite == "network" {
		o.BenchNet = abs(o.BenchNet)
		bn, err := os.ReadFile(o.BenchNet)
		if err != nil {
			return fmt.Errorf("%v (run `make netbench`)", err)
		}
		if err := os.WriteFile(filepath.Join(b.rootfs, "bin", "bench-net"), bn, 0o755); err != nil {
			return err
		}
	}
	// The config: what `runvirt spec` writes (runc's default), run without
	// a terminal and with a writable rootfs.
	if out, err := exec.Command(o.Runvirt, "spec", "--bundle", b.bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runvirt spec: %v: %s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(b.bundle, "config.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &b.baseSpec); err != nil {
		return err
	}
	proc := b.baseSpec["process"].(map[string]any)
	proc["terminal"] = false
	// runc warns about and skips ambient capabilities it cannot raise (the
	// spec has no inheritable set); runvirt's agent fails the start
	// ("raise ambient CAP_KILL: operation not permitted"). Drop them, as
	// integration/helpers_test.go's spec does.
	if caps, ok := proc["capabilities"].(map[string]any); ok {
		delete(caps, "ambient")
	}
	b.baseSpec["root"].(map[string]any)["readonly"] = false

	b.cfg = make(map[string]string)
	// Templates keep their RAM in a file: on a tmpfs, as runvirt's default
	// template_dir is on a usual host.
	if b.tmplDir, err = os.MkdirTemp("/dev/shm", "rvb-templates-"); err != nil {
		return err
	}
	for _, v := range []struct{ name, machine, fs, extra string }{
		{cfgPrimary, "microvm", "virtio-fs", ""}, {cfg9p, "microvm", "9p", ""}, {cfgQ35, "q35", "virtio-fs", ""},
		{cfg9pNoNIC, "microvm", "9p", "late_network = false\n"},
		{cfgTemplate, "microvm", "9p", fmt.Sprintf("template = true\ntemplate_dir = %q\n", b.tmplDir)},
	} {
		p := filepath.Join(b.work, v.name+".toml")
		text := fmt.Sprintf("kernel = %q\ninitrd = %q\nmachine = %q\nshared_fs = %q\nmemory_mib = 256\nvcpus = 1\naccel = \"auto\"\nboot_timeout = \"120s\"\n%s",
			kernel, initrd, v.machine, v.fs, v.extra)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
		b.cfg[v.name] = p
	}
	accel, _, err := hypervisor.ChooseAccel("auto", hypervisor.DetectKVM())
	if err != nil {
		return err
	}
	b.accel = accel
	b.floorRD = filepath.Join(b.work, "floor-initrd.img")
	if o.Only == "" {
		if err := writeInitramfs(b.floorRD, o.BenchInit); err != nil {
			return err
		}
	}
	b.res.Start = make(map[string]*startResult)
	b.res.Exec = make(map[string][]float64)
	b.res.ExecCPU = make(map[string]*execCPU)
	b.res.ExecBreak = make(map[string][]float64)
	b.res.IO = make(map[string]map[string][]float64)
	b.res.Cmdline = make(map[string]string)
	b.res.TemplateBytes = make(map[string]int64)
	b.res.Date = time.Now().UTC().Format("2006-01-02 15:04 UTC")
	b.res.Facts = b.facts(kernel)
	return nil
}

func (b *bench) kernel() string {
	k, _ := testutil.GuestImage(b.o.Guest)
	return k
}

func (b *bench) facts(kernel string) [][2]string {
	host, _ := os.Hostname()
	b.res.Host = host
	kvm := hypervisor.DetectKVM()
	mem := "?"
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb int
			fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	cpus := 0
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if strings.HasPrefix(l, "processor") {
			cpus++
		}
	}
	accel := b.accel
	if accel == "tcg" {
		accel = "tcg (no usable KVM: QEMU emulates the CPU)"
	}
	if kvm.Usable {
		accel = "kvm"
	}
	return [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"CPU", fmt.Sprintf("%s, %d logical CPUs", cpuModel(), cpus)},
		{"memory", mem},
		{"host kernel", readFile("/proc/sys/kernel/osrelease")},
		{"distribution", "Debian " + readFile("/etc/debian_version")},
		{"accelerator", accel},
		{"QEMU", firstLine(cmdOut(b.o.QEMU, "--version"))},
		{"virtiofsd", firstLine(cmdOut("/usr/lib/qemu/virtiofsd", "--version"))},
		{"runc", firstLine(cmdOut(b.o.Runc, "--version"))},
		{"runvirt", firstLine(cmdOut(b.o.Runvirt, "--version"))},
		{"guest kernel", readFile(filepath.Join(b.o.Guest, "kernel.release")) + " (" + filepath.Base(kernel) + ")"},
		{"guest", "1 vCPU, 256 MiB, transport serial (no /dev/vhost-vsock here) unless noted"},
	}
}

// makeBusyboxRootfs builds a rootfs from the static busybox, as the
// integration tests do.
func makeBusyboxRootfs(dir string) error {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root", "iotest", "mnt/bind"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("%v (install busybox-static: make deps)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", name))
		}
	}
	os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	return nil
}

// writeSpec writes the bundle's config.json with these args (and extra
// mounts).
func (b *bench) writeSpec(args []string, mounts ...map[string]any) error {
	raw, _ := json.Marshal(b.baseSpec)
	var s map[string]any
	json.Unmarshal(raw, &s)
	s["process"].(map[string]any)["args"] = args
	if len(mounts) > 0 {
		ms, _ := s["mounts"].([]any)
		for _, m := range mounts {
			ms = append(ms, m)
		}
		s["mounts"] = ms
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.bundle, "config.json"), out, 0o644)
}

func (b *bench) id(prefix string) string {
	b.seq++
	return fmt.Sprintf("%s-%d", prefix, b.seq)
}

func (b *bench) runvirt(args ...string) *exec.Cmd {
	return exec.Command(b.o.Runvirt, append([]string{"--root", b.root}, args...)...)
}

func (b *bench) runc(args ...string) *exec.Cmd {
	return exec.Command(b.o.Runc, append([]string{"--root", b.rcRoot}, args...)...)
}

func (b *bench) writeJSON() error {
	if err := os.MkdirAll(filepath.Dir(b.o.JSONOut), 0o755); err != nil {
		return err
	}
	out, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(b.o.JSONOut, out, 0o644)
}

// cleanup removes every container this run left (after a failure) and the
// work directory.
func (b *bench) cleanup() {
	if out, err := b.runvirt("list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			b.runvirt("delete", "--force", id).Run()
		}
	}
	if out, err := b.runc("list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			b.runc("delete", "--force", id).Run()
		}
	}
	if b.tmplDir != "" {
		os.RemoveAll(b.tmplDir)
	}
	if !b.o.Keep {
		os.RemoveAll(b.work)
	}
}

// templateRAM notes how much memory runvirt's template RAM file holds: the
// pages the template's guest touched, kept once for every copy.
func (b *bench) templateRAM() {
	rams, _ := filepath.Glob(filepath.Join(b.tmplDir, "*", "ram"))
	if len(rams) == 0 {
		return
	}
	var st syscall.Stat_t
	if syscall.Stat(rams[0], &st) == nil {
		b.res.TemplateRAMKiB = st.Blocks / 2
	}
}
