package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
)

// A private test subnet, only ever on this test's veth pair: one end in
// the test's network namespace, the other in the host's.
const (
	netContainerIP = "10.200.0.2"
	netHostIP      = "10.200.0.1"
	// A unique local IPv6 prefix, private in the same way.
	netContainerIP6 = "fd00:200::2"
	netHostIP6      = "fd00:200::1"
	// A static neighbour entry, as some CNI plugins set.
	netStaticNeigh    = "10.200.0.99"
	netStaticNeighMAC = "02:00:00:c8:00:63"
)

// cniNetNS makes what CNI hands a runtime before create: a named network
// namespace holding one end of a veth pair (eth0, netContainerIP/24 and
// netContainerIP6/64, default routes via the other end), the other end here
// with netHostIP/24 and netHostIP6/64. Both go in Cleanup. Duplicate address
// detection is off, so the addresses work at once. It returns the namespace's name and eth0's MAC.
func cniNetNS(t *testing.T) (ns, mac string) {
	t.Helper()
	testutil.RequiresCommands(t, "iproute2", "ip", "tc")
	ns = fmt.Sprintf("rvnet%d", os.Getpid())
	host := fmt.Sprintf("rvhost%d", os.Getpid())
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ip("netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ip("-n", ns, "addr", "add", netContainerIP+"/24", "dev", "eth0")
	ip("-n", ns, "addr", "add", netContainerIP6+"/64", "dev", "eth0", "nodad")
	ip("-n", ns, "link", "set", "eth0", "mtu", "1400", "up")
	ip("-n", ns, "neigh", "add", netStaticNeigh, "lladdr", netStaticNeighMAC, "dev", "eth0", "nud", "permanent")
	ip("-n", ns, "route", "add", "default", "via", netHostIP)
	ip("-n", ns, "-6", "route", "add", "default", "via", netHostIP6)
	ip("addr", "add", netHostIP+"/24", "dev", host)
	ip("addr", "add", netHostIP6+"/64", "dev", host, "nodad")
	ip("link", "set", host, "up")
	for _, f := range strings.Fields(ip("-n", ns, "-o", "link", "show", "eth0")) {
		if strings.Count(f, ":") == 5 && f != "ff:ff:ff:ff:ff:ff" {
			return ns, f
		}
	}
	t.Fatal("no mac for eth0")
	return "", ""
}

// setConfig replaces one line of the test's config.
func (e *env) setConfig(old, new string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil || !strings.Contains(string(b), old) {
		e.t.Fatalf("config %s lacks %q: %v", b, old, err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// setMachine makes the config name machine, whatever it named before
// (RUNVIRT_TEST_MACHINE may have set one).
func (e *env) setMachine(machine string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.HasPrefix(l, "machine = ") {
			lines = append(lines, l)
		}
	}
	lines = append(lines, fmt.Sprintf("machine = %q", machine))
	if err := os.WriteFile(e.config, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) joinNetNS(ns string) {
	for i, n := range e.spec.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			e.spec.Linux.Namespaces[i].Path = "/var/run/netns/" + ns
		}
	}
}

// checkUnplumbed fails the test if runvirt left a tap, a qdisc or a filter
// in the namespace.
func checkUnplumbed(t *testing.T, ns string) {
	t.Helper()
	if out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput(); strings.Contains(string(out), "tap") {
		t.Errorf("tap left in the namespace: %s", out)
	}
	for _, what := range [][]string{{"qdisc", "show"}, {"filter", "show", "dev", "eth0", "ingress"}} {
		out, _ := exec.Command("ip", append([]string{"netns", "exec", ns, "tc"}, what...)...).CombinedOutput()
		if strings.Contains(string(out), "ingress") || strings.Contains(string(out), "mirred") {
			t.Errorf("tc %v left in the namespace: %s", what, out)
		}
	}
}

// A network namespace given by path (CNI, CRI) is carried into the VM: the
// guest NIC has the veth's MAC, address and default route, traffic flows
// both ways, and delete leaves the namespace as it found it.
func TestNetworkNamespaceByPath(t *testing.T) {
	testNetworkByPath(t, "q35")
}

// The same on microvm, where the NIC is a virtio-mmio device.
func TestNetworkNamespaceByPathMicrovm(t *testing.T) {
	testNetworkByPath(t, "microvm")
}

// The same from a template: the copy's NIC gets the veth's MAC, not the
// template's.
func TestNetworkNamespaceByPathTemplate(t *testing.T) {
	testNetworkByPath(t, "microvm", withTemplate(t.TempDir()))
}

func testNetworkByPath(t *testing.T, machine string, opts ...envOpt) {
	e := newEnv(t, opts...)
	e.setMachine(machine)
	ns, mac := cniNetNS(t)
	e.joinNetNS(ns)
	// busybox ping needs a raw socket.
	caps := e.spec.Process.Capabilities
	caps.Bounding = append(caps.Bounding, "CAP_NET_RAW")
	caps.Effective, caps.Permitted = caps.Bounding, caps.Bounding
	e.spec.Process.Args = []string{"sleep", "600"}
	pid, _, _ := e.create("net")

	// Plumbed in the namespace: a tap redirected to and from eth0.
	if out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput(); !strings.Contains(string(out), "tap0_rv") {
		t.Errorf("no tap in the namespace: %s", out)
	}
	// The stand-in lives in that namespace.
	var want string
	if st, err := os.Stat("/var/run/netns/" + ns); err == nil {
		want = fmt.Sprintf("net:[%d]", st.Sys().(*syscall.Stat_t).Ino)
	}
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); got != want {
		t.Errorf("stand-in network namespace %q, want %q", got, want)
	}
	e.mustRun("start", "net")
	if e.template {
		e.checkRestored("net")
	}

	exe := func(args ...string) string {
		t.Helper()
		out, err := e.command(append([]string{"exec", "net"}, args...)...).CombinedOutput()
		t.Logf("exec %v: %v\n%s", args, err, out)
		if err != nil {
			t.Errorf("exec %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// The interface that has the address has the veth's MAC.
	addrs := exe("ip", "addr")
	found := false
	for _, block := range interfaceBlocks(addrs) {
		if strings.Contains(block, "inet "+netContainerIP+"/24") {
			found = true
			if !strings.Contains(block, "link/ether "+mac) {
				t.Errorf("the interface with %s lacks the veth's mac %s:\n%s", netContainerIP, mac, block)
			}
			if !strings.Contains(block, "inet6 "+netContainerIP6+"/64") {
				t.Errorf("the interface with %s lacks %s:\n%s", netContainerIP, netContainerIP6, block)
			}
			if !strings.Contains(block, "mtu 1400") {
				t.Errorf("the interface with %s lacks the veth's mtu 1400:\n%s", netContainerIP, block)
			}
			if !strings.Contains(block, "eth0") {
				t.Errorf("the interface with %s is not named eth0:\n%s", netContainerIP, block)
			}
		}
	}
	if !found {
		t.Errorf("no interface with %s in the container:\n%s", netContainerIP, addrs)
	}
	if routes := exe("ip", "route"); !strings.Contains(routes, "default via "+netHostIP) {
		t.Errorf("no default route via %s in the container:\n%s", netHostIP, routes)
	}
	if routes := exe("ip", "-6", "route"); !strings.Contains(routes, "default via "+netHostIP6) {
		t.Errorf("no IPv6 default route via %s in the container:\n%s", netHostIP6, routes)
	}
	neighOK := false
	neighs := exe("ip", "neigh")
	for _, line := range strings.Split(neighs, "\n") {
		neighOK = neighOK || strings.HasPrefix(line, netStaticNeigh+" dev eth0 lladdr "+netStaticNeighMAC) && strings.HasSuffix(strings.TrimSpace(line), "PERMANENT")
	}
	if !neighOK {
		t.Errorf("no static neighbour %s in the container:\n%s", netStaticNeigh, neighs)
	}
	exe("ping", "-c", "1", "-W", "20", netHostIP)
	exe("ping", "-6", "-c", "1", "-W", "20", netHostIP6)
	// And the host reaches the container.
	for _, args := range [][]string{{"-4", netContainerIP}, {"-6", netContainerIP6}} {
		if out, err := exec.Command("/bin/busybox", "ping", args[0], "-c", "1", "-W", "20", args[1]).CombinedOutput(); err != nil {
			t.Errorf("ping %s from the host: %v\n%s", args[1], err, out)
		}
	}

	e.mustRun("kill", "net", "KILL")
	reapStandIn(t, pid, 60*time.Second)
	e.mustRun("delete", "net")
	checkUnplumbed(t, ns)
}

// A create that fails after the plumbing (here: the VM does not boot in
// time) removes it.
func TestNetworkCreateFailureUnplumbs(t *testing.T) {
	e := newEnv(t)
	e.setConfig(`boot_timeout = "90s"`, `boot_timeout = "100ms"`)
	ns, _ := cniNetNS(t)
	e.joinNetNS(ns)
	e.spec.Process.Args = []string{"true"}
	e.writeSpec()
	e.mustFail("start vm", "create", "--bundle", e.bundle, "boom")
	checkUnplumbed(t, ns)
}

// interfaceBlocks splits `ip addr` output into one block per interface.
func interfaceBlocks(s string) []string {
	var blocks []string
	for _, line := range strings.Split(s, "\n") {
		if line != "" && line[0] >= '0' && line[0] <= '9' {
			blocks = append(blocks, "")
		}
		if len(blocks) > 0 {
			blocks[len(blocks)-1] += line + "\n"
		}
	}
	return blocks
}

// A new network namespace that nobody fills (ctr's default, docker
// --network none) gives a guest with loopback only; the namespace is the
// stand-in's, and delete leaves neither of them.
func TestNetworkNewNamespaceLoopbackOnly(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", "ip -o link | cut -d: -f2"}
	r := e.runArgs("lo", e.spec.Process.Args...)
	if r.code != 0 || strings.Fields(r.stdout)[0] != "lo" || len(strings.Fields(r.stdout)) != 1 {
		t.Errorf("links in the guest: %q (exit %d), want lo alone", r.stdout, r.code)
	}
}

// lateVeth is the shell that fills the network namespace of process $pid
// as docker does after the VM booted: a veth pair, one end moved into the
// namespace as eth0 with 10.201.N.2/24 and a default route, the other end
// (named host) on the host with 10.201.N.1/24.
func lateVeth(host string, n int) string {
	return fmt.Sprintf(`set -e
ip link add %[1]s type veth peer name eth0 netns "$pid"
nsenter --net=/proc/"$pid"/ns/net sh -c 'ip addr add 10.201.%[2]d.2/24 dev eth0 && ip link set eth0 up && ip route add default via 10.201.%[2]d.1'
ip addr add 10.201.%[2]d.1/24 dev %[1]s
ip link set %[1]s up
`, host, n)
}

// docker ≤ 27 fills the namespace from its prestart hook, docker ≥ 28
// between create and start: either way the guest gets the interface.
func TestNetworkFilledAfterBoot(t *testing.T) { testNetworkFilledAfterBoot(t, 0) }

// The same from a template: the copy's spare NIC is taken over.
func TestNetworkFilledAfterBootTemplate(t *testing.T) {
	testNetworkFilledAfterBoot(t, 2, withTemplate(t.TempDir()))
}

// first numbers the veths and subnets, so that variants do not collide.
func testNetworkFilledAfterBoot(t *testing.T, first int, opts ...envOpt) {
	for i, when := range []string{"prestart-hook", "before-start"} {
		i += first
		t.Run(when, func(t *testing.T) {
			if !inPath("ip") || !inPath("nsenter") {
				t.Fatal("integration prerequisite missing: ip and nsenter (iproute2, util-linux)")
			}
			e := newEnv(t, opts...)
			host := fmt.Sprintf("rvl%d%d", i, os.Getpid()%100000)
			t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
			script := lateVeth(host, i)
			if when == "prestart-hook" {
				e.spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{
					Path: "/bin/sh",
					Args: []string{"sh", "-c", `pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p'); ` + script},
					Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
				}}}
			}
			caps := e.spec.Process.Capabilities
			caps.Bounding = append(caps.Bounding, "CAP_NET_RAW")
			caps.Effective, caps.Permitted = caps.Bounding, caps.Bounding
			e.spec.Process.Args = []string{"sleep", "600"}
			pid, _, _ := e.create("late")
			if when == "before-start" {
				cmd := exec.Command("sh", "-c", script)
				cmd.Env = append(os.Environ(), fmt.Sprintf("pid=%d", pid))
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("fill the namespace: %v\n%s", err, out)
				}
			}
			e.mustRun("start", "late")
			if e.template {
				e.checkRestored("late")
			}
			ip := fmt.Sprintf("10.201.%d.2", i)
			gw := fmt.Sprintf("10.201.%d.1", i)
			addrs := e.mustRun("exec", "late", "ip", "addr")
			mac := ""
			if out, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "ip", "-o", "link", "show", "eth0").Output(); err == nil {
				if _, rest, ok := strings.Cut(string(out), "link/ether "); ok {
					mac = strings.Fields(rest)[0]
				}
			}
			found := false
			for _, block := range interfaceBlocks(addrs) {
				if strings.Contains(block, "inet "+ip+"/24") {
					found = true
					if mac == "" || !strings.Contains(block, "link/ether "+mac) || !strings.Contains(block, "eth0") {
						t.Errorf("the interface with %s is not eth0 with the veth's mac %q:\n%s", ip, mac, block)
					}
				}
			}
			if !found || len(interfaceBlocks(addrs)) != 2 {
				t.Errorf("want lo and eth0 with %s in the guest:\n%s", ip, addrs)
			}
			if routes := e.mustRun("exec", "late", "ip", "route"); !strings.Contains(routes, "default via "+gw) {
				t.Errorf("no default route via %s:\n%s", gw, routes)
			}
			e.mustRun("exec", "late", "ping", "-c", "1", "-W", "20", gw)
			if out, err := exec.Command("/bin/busybox", "ping", "-c", "1", "-W", "20", ip).CombinedOutput(); err != nil {
				t.Errorf("ping %s from the host: %v\n%s", ip, err, out)
			}
			e.mustRun("delete", "--force", "late")
			reapStandIn(t, pid, 30*time.Second)
			if _, err := os.Stat(e.root + "/late"); err == nil {
				t.Error("state left")
			}
		})
	}
}
