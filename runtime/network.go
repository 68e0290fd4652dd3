package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Networking, the plumbing. A container's network namespace is where its
// clients (CNI, docker) put its interfaces; the VM must show up there. For
// each interface of the namespace (a veth, a macvlan, an ipvlan) runvirt
// makes a tap device in the same namespace, with the same MTU, and joins the
// two with tc: an ingress qdisc on each and a u32 match-all filter whose
// mirred action redirects every frame to the other's egress (Kata's
// "tcfilter" model). QEMU gets the tap as a virtio-net NIC with the
// interface's MAC, and the agent gives that NIC the interface's addresses,
// routes and neighbours. The interface keeps its addresses in the namespace:
// nothing reaches the namespace's own stack any more (ingress redirects first),
// and clients that read them back (docker inspect, CNI's GC) still find them.
//
// Who does what: the verb that creates the sandbox scans the namespace and
// builds the plumbing (setupNetwork) before the monitor starts, and records
// it in the state; the monitor opens the taps in the namespace and hands the
// fds to QEMU (openTaps); the agent is told the description (Client.Network);
// destroy removes the taps and the qdiscs and filters on the interfaces
// (teardown), as does any failure of create.
//
// Only a namespace given by path (CNI, CRI) is plumbed at create. A new
// namespace (docker, ctr, podman) is empty at create: docker fills it from a
// prestart hook (≤ 27) or between create and start (≥ 28). TODO(issue 5):
// for those, Start re-scans the stand-in's namespace (/proc/<stand-in>/ns/net)
// just before it asks the agent to start the workload, plumbs what it finds,
// hot-plugs the NICs through QMP (getfd + netdev_add + device_add, which the
// monitor would do as it holds the QMP socket) and sends OpNetwork again,
// which the agent applies idempotently.

// SandboxNetwork is the plumbing of one sandbox, kept in its state.
type SandboxNetwork struct {
	// NetNS is the path of the container's network namespace.
	NetNS string `json:"netns"`
	// Own: runvirt made the namespace (the spec asked for a new one) and
	// removes it on teardown; its first tap is a spare until an interface
	// appears (see netlate.go).
	Own        bool      `json:"own,omitempty"`
	Interfaces []TapLink `json:"interfaces"`
}

// TapLink is one interface of the namespace and the tap that stands for it.
type TapLink struct {
	Link     string `json:"link"` // the interface's name (a veth); "" for a spare tap
	Tap      string `json:"tap"`
	TapIndex int    `json:"tap_index"`
	// OwnQdisc: the link's ingress qdisc was made by runvirt (and goes on
	// teardown); otherwise only runvirt's filter on it is removed.
	OwnQdisc bool            `json:"own_qdisc,omitempty"`
	Guest    agent.Interface `json:"guest"`
}

// tapFlags are the tap's flags, at creation and whenever it is opened.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// plumbedTypes are the link types given a tap. Others (bridges, tunnels,
// dummies) have no peer to carry frames to and are left alone, with a
// warning.
var plumbedTypes = map[string]bool{"veth": true, "macvlan": true, "ipvlan": true}

// networkNamespace returns the path of the spec's network namespace, if it
// has one given by path.
func networkNamespace(spec *specs.Spec) (string, bool) {
	if spec.Linux == nil {
		return "", false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			return ns.Path, true
		}
	}
	return "", false
}

// plumbNetwork plumbs the spec's network namespace when it is given by
// path; otherwise there is nothing to plumb yet and it returns nil.
func plumbNetwork(spec *specs.Spec, log *slog.Logger) (*SandboxNetwork, error) {
	if !hasNetworkNamespace(spec) {
		// The host's network namespace cannot be handed to a VM: the
		// container gets a guest with loopback only (Kata refuses such a
		// spec; runvirt runs it, isolated, and says so).
		log.Warn("the spec shares the host's network namespace, which a VM cannot join: the container gets loopback only")
	}
	path, ok := networkNamespace(spec)
	if !ok {
		return nil, nil
	}
	return setupNetwork(path, log)
}

// wantsNewNetNS says whether the spec asks for a new network namespace.
func wantsNewNetNS(spec *specs.Spec) bool {
	_, byPath := networkNamespace(spec)
	return hasNetworkNamespace(spec) && !byPath
}

// hasNetworkNamespace says whether the spec asks for a network namespace
// (new or by path) rather than the host's.
func hasNetworkNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return true
		}
	}
	return false
}

// setupNetwork plumbs every interface of the namespace at path into taps
// for the VM. It returns nil for a namespace with nothing but loopback. On
// failure nothing it made is left.
func setupNetwork(path string, log *slog.Logger) (*SandboxNetwork, error) {
	n := &SandboxNetwork{NetNS: path}
	err := nsexec.Do(path, unix.CLONE_NEWNET, func() error {
		links, err := dump(func() ([]netlink.Link, error) { return netlink.LinkList() })
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		taken := map[string]bool{}
		for _, l := range links {
			taken[l.Attrs().Name] = true
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 {
				continue
			}
			if !plumbedTypes[l.Type()] || len(a.HardwareAddr) != 6 {
				log.Warn("network: interface left out of the vm", "link", a.Name, "type", l.Type())
				continue
			}
			g, err := scanLink(l)
			if err != nil {
				return err
			}
			tl, err := plumb(l, freeTapName(taken))
			if err != nil {
				return err
			}
			tl.Guest = g
			// Recorded at once, so a later failure undoes this one too.
			n.Interfaces = append(n.Interfaces, tl)
		}
		return nil
	})
	if err != nil {
		if terr := n.teardown(); terr != nil {
			log.Warn("network: undo partial plumbing", "err", terr)
		}
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	if len(n.Interfaces) == 0 {
		return nil, nil
	}
	for _, t := range n.Interfaces {
		log.Debug("network: plumbed", "link", t.Link, "tap", t.Tap, "mac", t.Guest.MAC, "mtu", t.Guest.MTU,
			"addrs", t.Guest.Addrs, "routes", len(t.Guest.Routes), "neighbors", len(t.Guest.Neighbors))
	}
	return n, nil
}

func freeTapName(taken map[string]bool) string {
	for i := 0; ; i++ {
		if name := fmt.Sprintf("tap%d_rv", i); !taken[name] {
			taken[name] = true
			return name
		}
	}
}

// dump retries a netlink dump the kernel interrupted (the tables changed
// under it), so a scan is never taken from a torn one.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for i := 0; i < 5; i++ {
		if out, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

// scanLink reads what the guest NIC must copy from l.
func scanLink(l netlink.Link) (agent.Interface, error) {
	name := l.Attrs().Name
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return agent.Interface{}, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	routes, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return agent.Interface{}, fmt.Errorf("list routes of %s: %w", name, err)
	}
	neighs, err := dump(func() ([]netlink.Neigh, error) { return netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL) })
	if err != nil {
		return agent.Interface{}, fmt.Errorf("list neighbours of %s: %w", name, err)
	}
	return describeLink(l.Attrs(), addrs, routes, neighs), nil
}

// describeLink turns what netlink says about one link into what the agent
// needs. Left out: IPv6 link-local addresses (the guest derives the same
// ones from the same MAC), routes the kernel made for an address (the guest
// makes them too), multicast, multipath and other tables' routes, and
// neighbours that were learned rather than set.
func describeLink(a *netlink.LinkAttrs, addrs []netlink.Addr, routes []netlink.Route, neighs []netlink.Neigh) agent.Interface {
	g := agent.Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
	for _, ad := range addrs {
		if ad.IPNet == nil || (ad.IP.To4() == nil && ad.IP.IsLinkLocalUnicast()) || ad.IP.IsLoopback() {
			continue
		}
		g.Addrs = append(g.Addrs, ad.IPNet.String())
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || len(r.MultiPath) > 0 || r.LinkIndex != a.Index ||
			(r.Table != 0 && r.Table != unix.RT_TABLE_MAIN) || (r.Type != 0 && r.Type != unix.RTN_UNICAST) {
			continue
		}
		dst := r.Dst
		if dst == nil {
			// A default route, from a netlink that does not spell it out.
			dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			if r.Gw != nil && r.Gw.To4() == nil {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
		}
		if dst.IP.IsMulticast() {
			continue
		}
		gr := agent.Route{Dest: dst.String(), Scope: uint8(r.Scope), Metric: r.Priority, OnLink: r.Flags&unix.RTNH_F_ONLINK != 0}
		if r.Gw != nil {
			gr.Gateway = r.Gw.String()
		}
		if r.Src != nil {
			gr.Source = r.Src.String()
		}
		g.Routes = append(g.Routes, gr)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil || len(n.HardwareAddr) == 0 {
			continue
		}
		g.Neighbors = append(g.Neighbors, agent.Neighbor{IP: n.IP.String(), MAC: n.HardwareAddr.String()})
	}
	return g
}

// plumb makes the tap for l and the redirects between them. On failure it
// undoes its own work.
func plumb(l netlink.Link, tapName string) (tl TapLink, err error) {
	a := l.Attrs()
	if tl, err = makeTap(tapName, a.MTU); err != nil {
		return tl, fmt.Errorf("%w (for %s)", err, a.Name)
	}
	tl.Link = a.Name
	if tl.OwnQdisc, err = connect(l, tl.TapIndex, tapName); err != nil {
		if tap, lerr := netlink.LinkByIndex(tl.TapIndex); lerr == nil {
			netlink.LinkDel(tap)
		}
		return tl, err
	}
	return tl, nil
}

// makeTap makes an up tap device with an ingress qdisc, in the current
// namespace. On failure it undoes its own work.
func makeTap(tapName string, mtu int) (tl TapLink, err error) {
	tl = TapLink{Tap: tapName}
	var cl cleanup
	defer cl.Run()
	// Persistent, so it outlives this process until the monitor opens it;
	// exclusive, so a leftover of the same name is an error, not reused.
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: tapName},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_TUN_EXCL,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return tl, fmt.Errorf("make tap %s: %w", tapName, err)
	}
	tapLink, err := netlink.LinkByName(tapName)
	if err != nil {
		return tl, fmt.Errorf("find tap %s: %w", tapName, err)
	}
	cl.Add(func() { netlink.LinkDel(tapLink) })
	tl.TapIndex = tapLink.Attrs().Index
	if err := netlink.LinkSetMTU(tapLink, mtu); err != nil {
		return tl, fmt.Errorf("set mtu %d of tap %s: %w", mtu, tapName, err)
	}
	if err := netlink.LinkSetUp(tapLink); err != nil {
		return tl, fmt.Errorf("bring up tap %s: %w", tapName, err)
	}
	if err := netlink.QdiscAdd(ingressQdisc(tl.TapIndex)); err != nil {
		return tl, fmt.Errorf("add ingress qdisc to %s: %w", tapName, err)
	}
	cl.Release()
	return tl, nil
}

// connect redirects every frame between l and the tap, both ways. It
// reports whether it made l's ingress qdisc (rather than sharing one). On
// failure it undoes its own work.
func connect(l netlink.Link, tapIndex int, tapName string) (ownQdisc bool, err error) {
	a := l.Attrs()
	var cl cleanup
	defer cl.Run()
	switch err := netlink.QdiscAdd(ingressQdisc(a.Index)); {
	case err == nil:
		ownQdisc = true
		cl.Add(func() { netlink.QdiscDel(ingressQdisc(a.Index)) })
	case errors.Is(err, unix.EEXIST):
		// Someone's ingress qdisc (a CNI plugin's): share it.
	default:
		return false, fmt.Errorf("add ingress qdisc to %s: %w", a.Name, err)
	}
	if err := netlink.FilterAdd(redirect(a.Index, tapIndex)); err != nil {
		return false, fmt.Errorf("redirect %s to %s: %w", a.Name, tapName, err)
	}
	cl.Add(func() { removeRedirect(a.Index, tapIndex) })
	if err := netlink.FilterAdd(redirect(tapIndex, a.Index)); err != nil {
		return false, fmt.Errorf("redirect %s to %s: %w", tapName, a.Name, err)
	}
	cl.Release()
	return ownQdisc, nil
}

func ingressQdisc(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
	}}
}

// redirect is a filter on from's ingress that sends every frame out of to.
func redirect(from, to int) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to)},
	}
}

// removeRedirect deletes the filters on from's ingress that redirect to to.
func removeRedirect(from, to int) error {
	link, err := netlink.LinkByIndex(from)
	if err != nil {
		return nil // gone, and its filters with it
	}
	filters, err := dump(func() ([]netlink.Filter, error) { return netlink.FilterList(link, netlink.MakeHandle(0xffff, 0)) })
	if err != nil {
		return fmt.Errorf("list filters of %s: %w", link.Attrs().Name, err)
	}
	var errs []error
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, act := range u.Actions {
			if m, ok := act.(*netlink.MirredAction); ok && m.Ifindex == to {
				if err := netlink.FilterDel(f); err != nil {
					errs = append(errs, fmt.Errorf("remove redirect from %s: %w", link.Attrs().Name, err))
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}

// teardown removes the taps and the redirects. A namespace that is gone
// took them with it. Safe to call twice.
func (n *SandboxNetwork) teardown() error {
	if n == nil {
		return nil
	}
	err := n.unplumb()
	if n.Own {
		err = errors.Join(err, removeNetNS(n.NetNS))
	}
	return err
}

func (n *SandboxNetwork) unplumb() error {
	if len(n.Interfaces) == 0 {
		return nil
	}
	err := nsexec.Do(n.NetNS, unix.CLONE_NEWNET, func() error {
		var errs []error
		for _, t := range n.Interfaces {
			// The link's side first: a redirect to a deleted tap no longer
			// names it, and could not be told from another's.
			if err := unplumbLink(t); err != nil {
				errs = append(errs, err)
			}
			if tap, err := netlink.LinkByIndex(t.TapIndex); err == nil && tap.Attrs().Name == t.Tap && tap.Type() == "tuntap" {
				// Its qdisc and filters go with it.
				if err := netlink.LinkDel(tap); err != nil {
					errs = append(errs, fmt.Errorf("remove tap %s: %w", t.Tap, err))
				}
			}
		}
		return errors.Join(errs...)
	})
	// A namespace that is gone (its path removed, or left as an empty file
	// once unmounted) took the plumbing with it.
	if errors.Is(err, nsexec.ErrNoNamespace) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove network plumbing in %s: %w", n.NetNS, err)
	}
	return nil
}

// unplumbLink removes runvirt's ingress qdisc from the link, or only its
// redirect when the qdisc is someone else's.
func unplumbLink(t TapLink) error {
	if t.Link == "" {
		return nil // a spare tap
	}
	link, err := netlink.LinkByName(t.Link)
	if err != nil {
		return nil // gone, and what it had with it
	}
	if !t.OwnQdisc {
		return removeRedirect(link.Attrs().Index, t.TapIndex)
	}
	if err := netlink.QdiscDel(ingressQdisc(link.Attrs().Index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("remove ingress qdisc of %s: %w", t.Link, err)
	}
	return nil
}

// openTaps opens each tap for QEMU, in the namespace (a tun file belongs to
// the namespace it was opened in). The caller closes the files.
func (n *SandboxNetwork) openTaps() ([]*os.File, error) {
	var files []*os.File
	err := nsexec.Do(n.NetNS, unix.CLONE_NEWNET, func() error {
		for _, t := range n.Interfaces {
			f, err := openTap(t.Tap)
			if err != nil {
				return err
			}
			files = append(files, f)
		}
		return nil
	})
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	return files, nil
}

// openTap attaches a new file to the persistent tap name. The fd stays in
// blocking mode and out of Go's poller: it is only passed on to QEMU.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %s: %w", name, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %s: TUNSETIFF: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// guest is what the agent is told.
func (n *SandboxNetwork) guest() []agent.Interface {
	var out []agent.Interface
	for _, t := range n.Interfaces {
		out = append(out, t.Guest)
	}
	return out
}
