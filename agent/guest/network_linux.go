package guest

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
		if ifc.Spare {
			if err := parkNIC(ifc.MAC); err != nil {
				return err
			}
			continue
		}
		var link netlink.Link
		var err error
		if ifc.BootMAC != "" {
			link, err = takeOverNIC(ifc.BootMAC, ifc.MAC)
		} else {
			link, err = waitLinkByMAC(ifc.MAC, nicWaitTimeout)
		}
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

// The parking: a network namespace of the agent's, where spare NICs wait
// out of the containers' sight (they share the guest's own namespace).
var parking struct {
	sync.Mutex
	ns   netns.NsHandle // 0 until first used
	root netns.NsHandle // the guest's own namespace
}

// parkingNS returns the parking namespace, making it on first use, and
// the guest's own. The latter is taken from this (unlocked, so pooled)
// thread: /proc/1/ns/net is the main thread's, which Go may have left in
// whatever namespace a locked goroutine that ended on it had joined.
func parkingNS() (park, root netns.NsHandle, err error) {
	parking.Lock()
	defer parking.Unlock()
	if parking.ns != 0 {
		return parking.ns, parking.root, nil
	}
	if parking.root == 0 {
		if parking.root, err = netns.Get(); err != nil {
			parking.root = 0
			return 0, 0, fmt.Errorf("open the guest's network namespace: %w", err)
		}
	}
	// The thread ends in the new namespace.
	var h netns.NsHandle
	err = nsexec.Throwaway(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("make the parking namespace: %w", err)
		}
		var err error
		h, err = netns.Get()
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	parking.ns = h
	return h, parking.root, nil
}

// parkNIC moves the NIC with that MAC into the parking namespace (if it is
// not there already).
func parkNIC(mac string) error {
	park, _, err := parkingNS()
	if err != nil {
		return err
	}
	if l, h := parkedLinkByMAC(park, mac); l != nil {
		h.Close()
		return nil
	}
	link, err := waitLinkByMAC(mac, nicWaitTimeout)
	if err != nil {
		return err
	}
	netlink.LinkSetDown(link)
	if err := netlink.LinkSetNsFd(link, int(park)); err != nil {
		return fmt.Errorf("park nic %s: %w", mac, err)
	}
	return nil
}

// takeOverNIC brings the NIC booted with bootMAC back from the parking
// (unless it is back already) and gives it mac.
func takeOverNIC(bootMAC, mac string) (netlink.Link, error) {
	if park, root, err := parkingNS(); err != nil {
		return nil, err
	} else if l, h := parkedLinkByMAC(park, bootMAC); l != nil {
		defer h.Close()
		if err := h.LinkSetNsFd(l, int(root)); err != nil {
			return nil, fmt.Errorf("unpark nic %s: %w", bootMAC, err)
		}
	}
	link, err := linkByMAC(mac)
	if err != nil || link != nil {
		return link, err // re-sent: taken over already
	}
	if link, err = waitLinkByMAC(bootMAC, nicWaitTimeout); err != nil {
		return nil, err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, invalid("network: mac %q: %v", mac, err)
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return nil, fmt.Errorf("bring down %s: %w", link.Attrs().Name, err)
	}
	if err := netlink.LinkSetHardwareAddr(link, hw); err != nil {
		return nil, fmt.Errorf("set mac %s of %s: %w", mac, link.Attrs().Name, err)
	}
	return waitLinkByMAC(mac, nicWaitTimeout)
}

// parkedLinkByMAC finds a link in the parking; the caller closes the handle.
func parkedLinkByMAC(park netns.NsHandle, mac string) (netlink.Link, *netlink.Handle) {
	// NETLINK_ROUTE alone: the guest kernel has no xfrm or netfilter
	// netlink, which a handle asks for by default.
	h, err := netlink.NewHandleAt(park, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil
	}
	links, _ := h.LinkList()
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac {
			return l, h
		}
	}
	h.Close()
	return nil, nil
}

// linkByMAC returns the link with that MAC in the guest's namespace, or nil.
func linkByMAC(mac string) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac {
			return l, nil
		}
	}
	return nil, nil
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
