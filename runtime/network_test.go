package runtime

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestDescribeLink(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:c8:00:02")
	attrs := &netlink.LinkAttrs{Index: 7, Name: "eth0", MTU: 1450, HardwareAddr: mac}
	addrs := []netlink.Addr{
		{IPNet: mustCIDR(t, "10.200.0.2/24")},
		{IPNet: mustCIDR(t, "fd00:200::2/64")},
		{IPNet: mustCIDR(t, "fe80::42:aff:fec8:2/64")}, // derived by the guest kernel
		{IPNet: mustCIDR(t, "169.254.1.2/16")},         // IPv4 link-local is kept
	}
	routes := []netlink.Route{
		{LinkIndex: 7, Dst: mustCIDR(t, "0.0.0.0/0"), Gw: net.ParseIP("10.200.0.1"), Protocol: unix.RTPROT_BOOT, Table: unix.RT_TABLE_MAIN},
		{LinkIndex: 7, Dst: mustCIDR(t, "10.200.0.0/24"), Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK, Src: net.ParseIP("10.200.0.2")},
		{LinkIndex: 7, Dst: mustCIDR(t, "10.9.0.0/16"), Scope: netlink.SCOPE_LINK, Src: net.ParseIP("10.200.0.2"), Priority: 5},
		{LinkIndex: 7, Dst: nil, Gw: net.ParseIP("fd00:200::1"), Flags: unix.RTNH_F_ONLINK},
		{LinkIndex: 7, Dst: mustCIDR(t, "ff00::/8"), Table: unix.RT_TABLE_MAIN},
		{LinkIndex: 7, Dst: mustCIDR(t, "10.8.0.0/16"), Table: 100},
		{LinkIndex: 3, Dst: mustCIDR(t, "10.7.0.0/16")},
		{LinkIndex: 7, Dst: mustCIDR(t, "10.6.0.0/16"), MultiPath: []*netlink.NexthopInfo{{LinkIndex: 7}}},
	}
	hw, _ := net.ParseMAC("02:00:00:00:00:01")
	neighs := []netlink.Neigh{
		{IP: net.ParseIP("10.200.0.1"), HardwareAddr: hw, State: netlink.NUD_PERMANENT},
		{IP: net.ParseIP("10.200.0.3"), HardwareAddr: hw, State: netlink.NUD_REACHABLE},
	}
	got := describeLink(attrs, addrs, routes, neighs)
	want := agent.Interface{
		Name: "eth0", MAC: "02:42:0a:c8:00:02", MTU: 1450,
		Addrs: []string{"10.200.0.2/24", "fd00:200::2/64", "169.254.1.2/16"},
		Routes: []agent.Route{
			{Dest: "0.0.0.0/0", Gateway: "10.200.0.1"},
			{Dest: "10.9.0.0/16", Source: "10.200.0.2", Scope: uint8(netlink.SCOPE_LINK), Metric: 5},
			{Dest: "::/0", Gateway: "fd00:200::1", OnLink: true},
		},
		Neighbors: []agent.Neighbor{{IP: "10.200.0.1", MAC: "02:00:00:00:00:01"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("describeLink:\n got %+v\nwant %+v", got, want)
	}
}

func TestNetworkNamespace(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
	if _, ok := networkNamespace(s); ok {
		t.Error("a new namespace has no path to plumb")
	}
	s.Linux.Namespaces[0].Path = "/var/run/netns/x"
	if p, ok := networkNamespace(s); !ok || p != "/var/run/netns/x" {
		t.Errorf("networkNamespace = %q, %v", p, ok)
	}
	if _, ok := networkNamespace(&specs.Spec{}); ok {
		t.Error("no linux section, no namespace")
	}
	var n *SandboxNetwork
	if err := n.teardown(); err != nil {
		t.Errorf("teardown of no network: %v", err)
	}
	// A namespace that is gone (CNI removed it first) took the plumbing
	// with it; so did one whose path is an unmounted, empty file.
	empty := t.TempDir() + "/netns"
	os.WriteFile(empty, nil, 0o644)
	for _, path := range []string{"/nonexistent/netns", empty} {
		n = &SandboxNetwork{NetNS: path, Interfaces: []TapLink{{Link: "eth0", Tap: "tap0_rv"}}}
		if err := n.teardown(); err != nil {
			t.Errorf("teardown in %s: %v", path, err)
		}
	}
}

// testNetNS makes a named network namespace holding one end of a veth
// pair (the other stays here), as CNI leaves it, and removes both in
// Cleanup.
func testNetNS(t *testing.T, inside, outside string) string {
	t.Helper()
	testutil.RequiresRoot(t, "make network namespaces")
	testutil.RequiresCommands(t, "iproute2", "ip")
	name := fmt.Sprintf("rvt%d", os.Getpid())
	host := fmt.Sprintf("rvh%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", name).Run()
	})
	ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name)
	ip("-n", name, "link", "set", "eth0", "mtu", "1400", "up")
	ip("-n", name, "addr", "add", inside, "dev", "eth0")
	ip("link", "set", host, "up")
	ip("addr", "add", outside, "dev", host)
	ip("-n", name, "route", "add", "default", "via", strings.Split(outside, "/")[0])
	return "/var/run/netns/" + name
}

func tcShow(t *testing.T, ns string, what ...string) string {
	t.Helper()
	out, _ := exec.Command("ip", append([]string{"netns", "exec", ns, "tc"}, what...)...).CombinedOutput()
	return string(out)
}

func TestNetworkPlumbing(t *testing.T) {
	path := testNetNS(t, "10.201.0.2/24", "10.201.0.1/24")
	ns := path[strings.LastIndex(path, "/")+1:]
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := setupNetwork(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if n == nil || len(n.Interfaces) != 1 {
		t.Fatalf("plumbing: %+v", n)
	}
	tl := n.Interfaces[0]
	if tl.Link != "eth0" || tl.Tap != "tap0_rv" || !tl.OwnQdisc || tl.Guest.MTU != 1400 ||
		!reflect.DeepEqual(tl.Guest.Addrs, []string{"10.201.0.2/24"}) ||
		len(tl.Guest.Routes) != 1 || tl.Guest.Routes[0].Dest != "0.0.0.0/0" || tl.Guest.Routes[0].Gateway != "10.201.0.1" {
		t.Errorf("plumbing: %+v", tl)
	}
	out, _ := exec.Command("ip", "-n", ns, "-o", "link", "show", "tap0_rv").CombinedOutput()
	if !strings.Contains(string(out), "mtu 1400") {
		t.Errorf("tap: %s", out)
	}
	for _, dev := range []string{"eth0", "tap0_rv"} {
		if f := tcShow(t, ns, "filter", "show", "dev", dev, "ingress"); !strings.Contains(f, "mirred") || !strings.Contains(f, "Redirect to device") {
			t.Errorf("%s has no redirect: %s", dev, f)
		}
	}
	// The monitor's side: the tap opens, in the namespace, with our flags.
	files, err := n.openTaps()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	if err := n.teardown(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput(); strings.Contains(string(out), "tap0_rv") {
		t.Errorf("tap left behind: %s", out)
	}
	if q := tcShow(t, ns, "qdisc", "show", "dev", "eth0"); strings.Contains(q, "ingress") {
		t.Errorf("ingress qdisc left behind: %s", q)
	}
	if err := n.teardown(); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

// A foreign ingress qdisc on the interface is shared, and only runvirt's
// filter goes on teardown.
func TestNetworkPlumbingSharesQdisc(t *testing.T) {
	path := testNetNS(t, "10.201.1.2/24", "10.201.1.1/24")
	ns := path[strings.LastIndex(path, "/")+1:]
	if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "ingress").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v %s", err, out)
	}
	n, err := setupNetwork(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if n.Interfaces[0].OwnQdisc {
		t.Error("the qdisc was there before: not ours")
	}
	if err := n.teardown(); err != nil {
		t.Fatal(err)
	}
	if q := tcShow(t, ns, "qdisc", "show", "dev", "eth0"); !strings.Contains(q, "ingress") {
		t.Errorf("foreign ingress qdisc removed: %s", q)
	}
	if f := tcShow(t, ns, "filter", "show", "dev", "eth0", "ingress"); strings.Contains(f, "mirred") {
		t.Errorf("redirect left behind: %s", f)
	}
}
