package main

// The network suite (`make netbench`): TCP throughput and round-trip
// latency, host ↔ container and container ↔ container, runvirt beside runc
// in one run. The containers join network namespaces made here as CNI
// would (veth pairs; for container ↔ container both on one bridge), so
// runvirt carries them into its VMs through tap + tc mirred and runc uses
// them as they are. The workload is bench/cmd/bench-net.

import (
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// netResult holds one runtime's samples per measurement.
type netResult map[string][]float64

// Measurements, in report order.
var netMeasures = []struct{ key, what, unit string }{
	{"h2c-stream", "host → container, TCP stream", "MiB/s"},
	{"c2h-stream", "container → host, TCP stream", "MiB/s"},
	{"h2c-rr-p50", "host ↔ container, 1-byte round trip, median", "µs"},
	{"h2c-rr-p99", "host ↔ container, 1-byte round trip, 99th percentile", "µs"},
	{"c2c-stream", "container → container (one bridge), TCP stream", "MiB/s"},
	{"c2c-rr-p50", "container ↔ container, 1-byte round trip, median", "µs"},
	{"c2c-rr-p99", "container ↔ container, 1-byte round trip, 99th percentile", "µs"},
}

const (
	netPort     = "5201"
	netHostPort = "5202"
	netBridge   = "rvbbr0"
)

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// netNS makes a named network namespace with a veth to the host (or to the
// bridge) and ip on its eth0; it returns the cleanup.
func netNS(name, hostEnd, ip, hostIP string, bridge bool) (func(), error) {
	undo := func() {
		exec.Command("ip", "link", "del", hostEnd).Run()
		exec.Command("ip", "netns", "del", name).Run()
	}
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"-n", name, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"link", "set", hostEnd, "up"},
	}
	if bridge {
		steps = append(steps, []string{"link", "set", hostEnd, "master", netBridge})
	} else {
		steps = append(steps, []string{"addr", "add", hostIP + "/24", "dev", hostEnd})
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			undo()
			return nil, err
		}
	}
	return undo, nil
}

// netContainer starts `bench-net serve` (or sleep) in a container of the
// runtime in the named namespace; it returns the cleanup.
func (b *bench) netContainer(rt, id, ns string, args []string) (func(), error) {
	if err := b.writeSpecNet(args, "/var/run/netns/"+ns); err != nil {
		return nil, err
	}
	var create, start, del *exec.Cmd
	if rt == "runvirt" {
		create = b.runvirt("--config", b.cfg[cfgPrimary], "create", "--bundle", b.bundle, id)
		start, del = b.runvirt("start", id), b.runvirt("delete", "--force", id)
	} else {
		create = b.runc("create", "--bundle", b.bundle, id)
		start, del = b.runc("start", id), b.runc("delete", "--force", id)
	}
	// The container keeps the stdio it was created with: give it files.
	logf, err := os.Create(filepath.Join(b.work, id+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	create.Stdout, create.Stderr = logf, logf
	if err := create.Run(); err != nil {
		return nil, fmt.Errorf("%s create %s: %v: %s", rt, id, err, readFile(logf.Name()))
	}
	undo := func() { del.Run() }
	if out, err := start.CombinedOutput(); err != nil {
		undo()
		return nil, fmt.Errorf("%s start %s: %v: %s", rt, id, err, out)
	}
	return undo, nil
}

// writeSpecNet writes the bundle's spec with these args in the network
// namespace at path.
func (b *bench) writeSpecNet(args []string, path string) error {
	if err := b.writeSpec(args); err != nil {
		return err
	}
	p := filepath.Join(b.bundle, "config.json")
	raw := readFile(p)
	// The spec from `runvirt spec` has {"type": "network"} without a path.
	fixed := strings.Replace(raw, `"type": "network"`, fmt.Sprintf(`"type": "network", "path": %q`, path), 1)
	if fixed == raw {
		return fmt.Errorf("the spec has no network namespace to point at %s", path)
	}
	return os.WriteFile(p, []byte(fixed), 0o644)
}

// waitTCP waits until addr accepts connections.
func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// execIn runs args in the container; it returns stdout.
func (b *bench) execIn(rt, id string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if rt == "runvirt" {
		cmd = b.runvirt(append([]string{"exec", id}, args...)...)
	} else {
		cmd = b.runc(append([]string{"exec", id}, args...)...)
	}
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("%s exec %v: %v: %s", rt, args, err, msg)
	}
	return string(out), nil
}

// record parses bench-net's output into samples.
func (r netResult) record(out, streamKey, rrKey string) error {
	f := strings.Fields(out)
	switch {
	case streamKey != "" && len(f) == 1:
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return err
		}
		r[streamKey] = append(r[streamKey], v)
	case rrKey != "" && len(f) == 2:
		p50, err1 := strconv.ParseFloat(f[0], 64)
		p99, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bench-net rr printed %q", out)
		}
		r[rrKey+"-p50"] = append(r[rrKey+"-p50"], p50)
		r[rrKey+"-p99"] = append(r[rrKey+"-p99"], p99)
	default:
		return fmt.Errorf("bench-net printed %q", out)
	}
	return nil
}

// networkBench runs the suite for runc and runvirt, each in its own
// namespaces and subnet.
func (b *bench) networkBench() {
	b.net = map[string]netResult{}
	if err := run("ip", "link", "add", netBridge, "type", "bridge"); err != nil {
		b.fail("network: %v", err)
		return
	}
	defer exec.Command("ip", "link", "del", netBridge).Run()
	if err := run("ip", "addr", "add", "10.211.0.1/24", "dev", netBridge); err != nil {
		b.fail("network: %v", err)
		return
	}
	run("ip", "link", "set", netBridge, "up")
	hostSrv := exec.Command(b.o.BenchNet, "serve", netHostPort)
	if err := hostSrv.Start(); err != nil {
		b.fail("network: host server: %v", err)
		return
	}
	defer hostSrv.Process.Kill()
	for i, rt := range []string{"runc", "runvirt"} {
		log.Printf("network: %s", rt)
		r := netResult{}
		b.net[rt] = r
		if err := b.netRuntime(rt, i, r); err != nil {
			b.fail("network %s: %v", rt, err)
		}
	}
}

func (b *bench) netRuntime(rt string, i int, r netResult) error {
	hostIP, ctrIP := fmt.Sprintf("10.210.%d.1", i), fmt.Sprintf("10.210.%d.2", i)
	undo, err := netNS(fmt.Sprintf("rvbn-h%d", i), fmt.Sprintf("rvbh%d", i), ctrIP, hostIP, false)
	if err != nil {
		return err
	}
	defer undo()
	srv := []string{"/bin/bench-net", "serve", netPort}
	id := b.id("net-" + rt)
	stop, err := b.netContainer(rt, id, fmt.Sprintf("rvbn-h%d", i), srv)
	if err != nil {
		return err
	}
	defer stop()
	if err := waitTCP(ctrIP+":"+netPort, 60*time.Second); err != nil {
		return err
	}
	secs := strconv.Itoa(b.o.NetSeconds)
	for rep := 0; rep < b.o.NetReps; rep++ {
		out, err := exec.Command(b.o.BenchNet, "stream", ctrIP+":"+netPort, secs).Output()
		if err != nil {
			return fmt.Errorf("host → container stream: %v", err)
		}
		if err := r.record(string(out), "h2c-stream", ""); err != nil {
			return err
		}
		if out, err := b.execIn(rt, id, "/bin/bench-net", "stream", hostIP+":"+netHostPort, secs); err != nil {
			return err
		} else if err := r.record(out, "c2h-stream", ""); err != nil {
			return err
		}
		out, err = exec.Command(b.o.BenchNet, "rr", ctrIP+":"+netPort, strconv.Itoa(b.o.NetRoundTrips)).Output()
		if err != nil {
			return fmt.Errorf("host ↔ container rr: %v", err)
		}
		if err := r.record(string(out), "", "h2c-rr"); err != nil {
			return err
		}
	}

	// Container ↔ container: two namespaces on the bridge.
	aIP, bIP := fmt.Sprintf("10.211.0.%d", 10+2*i), fmt.Sprintf("10.211.0.%d", 11+2*i)
	undoA, err := netNS(fmt.Sprintf("rvbn-a%d", i), fmt.Sprintf("rvba%d", i), aIP, "", true)
	if err != nil {
		return err
	}
	defer undoA()
	undoB, err := netNS(fmt.Sprintf("rvbn-b%d", i), fmt.Sprintf("rvbb%d", i), bIP, "", true)
	if err != nil {
		return err
	}
	defer undoB()
	stopA, err := b.netContainer(rt, b.id("neta-"+rt), fmt.Sprintf("rvbn-a%d", i), srv)
	if err != nil {
		return err
	}
	defer stopA()
	bID := b.id("netb-" + rt)
	stopB, err := b.netContainer(rt, bID, fmt.Sprintf("rvbn-b%d", i), []string{"sleep", "1000000"})
	if err != nil {
		return err
	}
	defer stopB()
	if err := waitTCP(aIP+":"+netPort, 60*time.Second); err != nil {
		return err
	}
	for rep := 0; rep < b.o.NetReps; rep++ {
		if out, err := b.execIn(rt, bID, "/bin/bench-net", "stream", aIP+":"+netPort, secs); err != nil {
			return err
		} else if err := r.record(out, "c2c-stream", ""); err != nil {
			return err
		}
		if out, err := b.execIn(rt, bID, "/bin/bench-net", "rr", aIP+":"+netPort, strconv.Itoa(b.o.NetRoundTrips)); err != nil {
			return err
		} else if err := r.record(out, "", "c2c-rr"); err != nil {
			return err
		}
	}
	return nil
}

// networkReport is the network suite's report.
func (b *bench) networkReport() string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	p("# runvirt network benchmarks\n\n")
	p("Written by `make netbench` (`bench/cmd/runvirt-bench -suite network`) on %s; every number below is\n", b.res.Date)
	p("from that one run (%.1f min). TCP throughput and round-trip latency, runvirt beside runc, with the\n", b.res.Duration/60)
	p("workload `bench/cmd/bench-net` (a static binary in the container's rootfs and on the host).\n\n")
	p("Set-up, as a CNI plugin would do it: each container joins a network namespace made by the\n")
	p("benchmark, holding one end of a veth pair. Host ↔ container: the other end is on the host with\n")
	p("an address of the same /24. Container ↔ container: both containers' veths are on one host bridge.\n")
	p("runc's container uses the namespace as it is; runvirt's VM is joined to it by a tap and tc mirred\n")
	p("redirects (virtio-net, vhost off); runvirt runs with its default machine, microvm, and virtio-fs.\n")
	p("Streams run %d s each; round trips are %d one-byte request/response exchanges on one TCP\n", b.o.NetSeconds, b.o.NetRoundTrips)
	p("connection (Nagle off). Cells are **median [min–max]** of\n")
	p("%d repetitions. The side that runs inside a container is started with `runc exec` / `runvirt exec`.\n\n", b.o.NetReps)
	p("## Machine\n\n| | |\n|---|---|\n")
	for _, f := range b.res.Facts {
		p("| %s | %s |\n", f[0], f[1])
	}
	p("| load average before → after | %s → %s |\n\n", b.res.LoadBefore, b.res.LoadAfter)
	p("## Results\n\n| | runc | runvirt | runvirt / runc |\n|---|---|---|---|\n")
	for _, m := range netMeasures {
		rc, rv := summarize(b.net["runc"][m.key]), summarize(b.net["runvirt"][m.key])
		ratio := "—"
		if rc.N > 0 && rv.N > 0 && rc.Median > 0 {
			ratio = fmt.Sprintf("%.2f×", rv.Median/rc.Median)
		}
		format := "%.0f"
		if m.unit == "MiB/s" && !math.IsNaN(rv.Median) && rv.Median < 100 {
			format = "%.1f"
		}
		p("| %s (%s) | %s | %s | %s |\n", m.what, m.unit, rc.cell("%.0f"), rv.cell(format), ratio)
	}
	if len(b.res.Errors) > 0 {
		p("\n## Failures in this run\n\n")
		for _, f := range b.res.Errors {
			p("- %s\n", f)
		}
	}
	p("\n## Reading the numbers\n\n")
	p("Under TCG (no KVM: see the accelerator above) every packet costs guest CPU in an emulator, so\n")
	p("runvirt's throughput is bound by the guest's emulated CPU, not by the tap + mirred path, and its\n")
	p("round trips carry two guest network stacks in emulation (container ↔ container: two VMs). With\n")
	p("KVM the emulation cost goes; runvirt does not yet use vhost-net for its taps (QEMU moves the\n")
	p("packets in user space), which a KVM host would show as the next limit.\n")
	return w.String()
}
