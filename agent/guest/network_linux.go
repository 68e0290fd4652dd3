package guest

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/runvirt/runvirt/agent"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nicWaitTimeout bounds the wait for a NIC to appear. virtio_net is loaded
// at boot, so the NICs are there long before any request; the wait covers a
// slow probe under TCG (and, later, a hot-plugged NIC).
const nicWaitTimeout = 10 * time.Second

// configureNetwork makes the guest's NICs look like the interfaces of the
// container's network namespace: each NIC, found by MAC, gets the
// interface's name, MTU, addresses and static neighbours and is brought up;
// then the routes of all of them are added, those to directly connected
// networks first, as a gateway must be reachable when its route is added.
// Everything is replaced rather than added, so the host may send a new scan
// again (OpNetwork is idempotent). The container shares the guest's network
// namespace, so this is the container's network.
func configureNetwork(ifaces []agent.Interface) error {
	type nicRoutes struct {
		index  int
		routes []agent.Route
	}
	var all []nicRoutes
	for _, ifc := range ifaces {
		link, err := waitLinkByMAC(ifc.MAC, nicWaitTimeout)
		if err != nil {
			return err
		}
		if link, err = setupLink(link, ifc); err != nil {
			return err
		}
		all = append(all, nicRoutes{link.Attrs().Index, ifc.Routes})
	}
	for _, nr := range all {
		routes, err := guestRoutes(nr.routes, nr.index)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if err := netlink.RouteReplace(r); err != nil {
				return fmt.Errorf("add route %s: %w", r, err)
			}
		}
	}
	return nil
}

// setupLink names the NIC, sets its MTU, addresses and neighbours, and
// brings it up.
func setupLink(link netlink.Link, ifc agent.Interface) (netlink.Link, error) {
	name := link.Attrs().Name
	if ifc.Name != "" && ifc.Name != name {
		// A name in use (NICs probed in another order) keeps the kernel's
		// name: the MAC is what matters. Renaming needs the link down.
		if _, err := netlink.LinkByName(ifc.Name); err != nil {
			if err := netlink.LinkSetDown(link); err != nil {
				return nil, fmt.Errorf("bring down %s: %w", name, err)
			}
			if err := netlink.LinkSetName(link, ifc.Name); err != nil {
				return nil, fmt.Errorf("rename %s to %s: %w", name, ifc.Name, err)
			}
			name = ifc.Name
		}
	}
	if ifc.MTU > 0 && ifc.MTU != link.Attrs().MTU {
		if err := netlink.LinkSetMTU(link, ifc.MTU); err != nil {
			return nil, fmt.Errorf("set mtu %d of %s: %w", ifc.MTU, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", name, err)
	}
	for _, a := range ifc.Addrs {
		addr, err := guestAddr(a)
		if err != nil {
			return nil, err
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return nil, fmt.Errorf("add address %s to %s: %w", a, name, err)
		}
	}
	for _, n := range ifc.Neighbors {
		neigh, err := guestNeigh(n, link.Attrs().Index)
		if err != nil {
			return nil, err
		}
		if err := netlink.NeighSet(neigh); err != nil {
			return nil, fmt.Errorf("add neighbour %s on %s: %w", n.IP, name, err)
		}
	}
	return link, nil
}

// waitLinkByMAC returns the link with that MAC, waiting for it to appear.
func waitLinkByMAC(mac string, timeout time.Duration) (netlink.Link, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, invalid("network: mac %q: %v", mac, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		links, err := netlink.LinkList()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			if l.Attrs().HardwareAddr.String() == hw.String() {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no nic with mac %s appeared within %s", mac, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func invalid(format string, a ...any) error {
	return &agent.RemoteError{Kind: agent.ErrKindInvalid, Msg: fmt.Sprintf(format, a...)}
}

// guestAddr parses an address. IPv6 ones skip duplicate address detection:
// the address is the namespace's, checked there, and a tentative address
// would make the first second of the workload's traffic fail.
func guestAddr(cidr string) (*netlink.Addr, error) {
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, invalid("network: address %q: %v", cidr, err)
	}
	ipnet.IP = ip
	a := &netlink.Addr{IPNet: ipnet}
	if ip.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	return a, nil
}

func guestNeigh(n agent.Neighbor, index int) (*netlink.Neigh, error) {
	ip := net.ParseIP(n.IP)
	if ip == nil {
		return nil, invalid("network: neighbour ip %q", n.IP)
	}
	hw, err := net.ParseMAC(n.MAC)
	if err != nil {
		return nil, invalid("network: neighbour mac %q: %v", n.MAC, err)
	}
	family := netlink.FAMILY_V6
	if ip.To4() != nil {
		family = netlink.FAMILY_V4
	}
	return &netlink.Neigh{LinkIndex: index, Family: family, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: hw}, nil
}

// guestRoutes turns routes of one NIC into netlink routes, ordered so that
// routes to directly connected networks come before those through a
// gateway.
func guestRoutes(rs []agent.Route, index int) ([]*netlink.Route, error) {
	var out []*netlink.Route
	for _, r := range rs {
		_, dst, err := net.ParseCIDR(r.Dest)
		if err != nil {
			return nil, invalid("network: route destination %q: %v", r.Dest, err)
		}
		nr := &netlink.Route{LinkIndex: index, Dst: dst, Scope: netlink.Scope(r.Scope), Priority: r.Metric}
		if r.Gateway != "" {
			if nr.Gw = net.ParseIP(r.Gateway); nr.Gw == nil {
				return nil, invalid("network: route gateway %q", r.Gateway)
			}
		}
		if r.Source != "" {
			if nr.Src = net.ParseIP(r.Source); nr.Src == nil {
				return nil, invalid("network: route source %q", r.Source)
			}
		}
		if r.OnLink {
			nr.Flags = unix.RTNH_F_ONLINK
		}
		out = append(out, nr)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Gw == nil && out[j].Gw != nil })
	return out, nil
}

// describeNICs is for the log: what the NICs ended up with.
func describeNICs(ifaces []agent.Interface) string {
	var b strings.Builder
	for _, ifc := range ifaces {
		fmt.Fprintf(&b, "%s(%s mtu %d %s) ", ifc.Name, ifc.MAC, ifc.MTU, strings.Join(ifc.Addrs, ","))
	}
	return strings.TrimSpace(b.String())
}
