package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/nsexec"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Networks that arrive after the VM booted. docker asks for a new, empty
// network namespace and fills it later: from its prestart hook (docker ≤ 27,
// during create, through /proc/<pid>/ns/net of the pid in the hook's state)
// or between create and start (docker ≥ 28, through the pid file's pid). The
// VM boots before either. So for a spec with a new network namespace
// runvirt makes that namespace itself (kept as a bind mount in the state
// directory; the stand-in joins it, so /proc/<stand-in>/ns/net is it) and
// puts one spare tap in it, which QEMU gets as a NIC at boot; the agent
// parks that NIC out of sight, so a namespace that stays empty (--network
// none, ctr) gives a guest with loopback only. After the prestart hooks and
// again at start, runvirt looks into the namespace: the first interface it
// finds there is joined to the spare tap (the same tc redirects as for a
// namespace ready before create), and the agent takes the NIC out of its
// parking, gives it the interface's MAC and configures it.

// newNetNS makes a network namespace and binds it at path.
func newNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("make network namespace file: %w", err)
	}
	f.Close()
	// The thread ends in the new namespace.
	err = nsexec.Throwaway(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		self := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind network namespace to %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unbinds and removes a namespace made by newNetNS; whatever
// holds it still (a stand-in) keeps it until it exits.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// spareMAC is a random locally administered unicast MAC for a spare NIC.
func spareMAC() string {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&0xfc | 0x02
	return net.HardwareAddr(b).String()
}

// setupLateNetwork makes the namespace of a spec that asks for a new one,
// with its spare tap, in the state directory dir.
func setupLateNetwork(dir string) (*SandboxNetwork, error) {
	path := filepath.Join(dir, "netns")
	if err := newNetNS(path); err != nil {
		return nil, err
	}
	n := &SandboxNetwork{NetNS: path, Own: true}
	err := nsexec.Do(path, unix.CLONE_NEWNET, func() error {
		tl, err := makeTap("tap0_rv", 1500)
		if err != nil {
			return err
		}
		tl.Guest = agent.Interface{MAC: spareMAC(), Spare: true}
		n.Interfaces = append(n.Interfaces, tl)
		return nil
	})
	if err != nil {
		removeNetNS(path)
		return nil, err
	}
	return n, nil
}

// spare returns the spare tap still waiting for an interface, if any.
func (n *SandboxNetwork) spare() *TapLink {
	if n == nil || !n.Own {
		return nil
	}
	for i := range n.Interfaces {
		if n.Interfaces[i].Link == "" {
			return &n.Interfaces[i]
		}
	}
	return nil
}

// plumbLate joins the first interface that has appeared in the
// container's namespace to the spare tap and has the guest configure its
// NIC. It does nothing when there is no spare or nothing has appeared. The
// caller holds the container's lock and saves the state.
func plumbLate(ctx context.Context, c *Container, log *slog.Logger) (bool, error) {
	n := c.State.Network
	sp := n.spare()
	if sp == nil {
		return false, nil
	}
	var found bool
	err := nsexec.Do(n.NetNS, unix.CLONE_NEWNET, func() error {
		links, err := dump(func() ([]netlink.Link, error) { return netlink.LinkList() })
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 || a.Index == sp.TapIndex {
				continue
			}
			if !plumbedTypes[l.Type()] || len(a.HardwareAddr) != 6 {
				log.Warn("network: interface left out of the vm", "link", a.Name, "type", l.Type())
				continue
			}
			if found {
				log.Warn("network: only one interface can join a vm after it booted; left out", "link", a.Name)
				continue
			}
			g, err := scanLink(l)
			if err != nil {
				return err
			}
			tap, err := netlink.LinkByIndex(sp.TapIndex)
			if err != nil {
				return fmt.Errorf("find tap %s: %w", sp.Tap, err)
			}
			if err := netlink.LinkSetMTU(tap, a.MTU); err != nil {
				return fmt.Errorf("set mtu %d of tap %s: %w", a.MTU, sp.Tap, err)
			}
			own, err := connect(l, sp.TapIndex, sp.Tap)
			if err != nil {
				return err
			}
			g.BootMAC = sp.Guest.MAC
			sp.Link, sp.OwnQdisc, sp.Guest = a.Name, own, g
			found = true
		}
		return nil
	})
	if err != nil || !found {
		return false, err
	}
	log.Debug("network: plumbed after boot", "link", sp.Link, "tap", sp.Tap, "mac", sp.Guest.MAC, "addrs", sp.Guest.Addrs)
	if err := c.client().Network(ctx, n.guest()); err != nil {
		return true, fmt.Errorf("configure network in vm: %w", err)
	}
	return true, nil
}
