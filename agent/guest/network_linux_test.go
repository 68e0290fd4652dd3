package guest

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestGuestRoutesOrderAndFields(t *testing.T) {
	rs, err := guestRoutes([]agent.Route{
		{Dest: "0.0.0.0/0", Gateway: "10.200.0.1", Metric: 3},
		{Dest: "10.9.0.0/16", Scope: 253, Source: "10.200.0.2"},
		{Dest: "::/0", Gateway: "fd00::1", OnLink: true},
	}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("routes: %v", rs)
	}
	// The connected route first: the gateways need it.
	if rs[0].Dst.String() != "10.9.0.0/16" || rs[0].Gw != nil || rs[0].Scope != 253 || !rs[0].Src.Equal(net.ParseIP("10.200.0.2")) {
		t.Errorf("route 0: %+v", rs[0])
	}
	if rs[1].Dst.String() != "0.0.0.0/0" || !rs[1].Gw.Equal(net.ParseIP("10.200.0.1")) || rs[1].Priority != 3 || rs[1].LinkIndex != 4 {
		t.Errorf("route 1: %+v", rs[1])
	}
	if rs[2].Dst.String() != "::/0" || rs[2].Flags != unix.RTNH_F_ONLINK {
		t.Errorf("route 2: %+v", rs[2])
	}
}

func TestGuestNetworkRejectsGarbage(t *testing.T) {
	var re *agent.RemoteError
	for name, err := range map[string]error{
		"route dest": func() error { _, err := guestRoutes([]agent.Route{{Dest: "nope"}}, 1); return err }(),
		"route gw":   func() error { _, err := guestRoutes([]agent.Route{{Dest: "0.0.0.0/0", Gateway: "x"}}, 1); return err }(),
		"addr":       func() error { _, err := guestAddr("10.0.0.1"); return err }(),
		"neigh ip":   func() error { _, err := guestNeigh(agent.Neighbor{IP: "x", MAC: "02:00:00:00:00:01"}, 1); return err }(),
		"neigh mac":  func() error { _, err := guestNeigh(agent.Neighbor{IP: "10.0.0.1", MAC: "x"}, 1); return err }(),
	} {
		if !errors.As(err, &re) || re.Kind != agent.ErrKindInvalid {
			t.Errorf("%s: %v, want an invalid-request error", name, err)
		}
	}
}

func TestGuestAddr(t *testing.T) {
	a, err := guestAddr("10.200.0.2/24")
	if err != nil || a.IPNet.String() != "10.200.0.2/24" || a.Flags != 0 {
		t.Errorf("v4: %+v %v", a, err)
	}
	a, err = guestAddr("fd00::2/64")
	if err != nil || a.IPNet.String() != "fd00::2/64" || a.Flags != unix.IFA_F_NODAD {
		t.Errorf("v6: %+v %v", a, err)
	}
	n, err := guestNeigh(agent.Neighbor{IP: "fd00::1", MAC: "02:00:00:00:00:01"}, 2)
	if err != nil || n.Family != unix.AF_INET6 || n.LinkIndex != 2 || n.HardwareAddr.String() != "02:00:00:00:00:01" {
		t.Errorf("neigh: %+v %v", n, err)
	}
}

// A spare NIC is parked out of sight and taken over later with another
// MAC: tried on a veth in a network namespace of the test's own.
func TestParkAndTakeOverNIC(t *testing.T) {
	testutil.RequiresRoot(t, "make network namespaces")
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends in the test's namespace.
		runtime.LockOSThread()
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			boot, _ := net.ParseMAC("02:00:00:00:00:01")
			// A veth: the test kernel may lack the dummy driver.
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nic0", HardwareAddr: boot}, PeerName: "peer0"}); err != nil {
				return fmt.Errorf("add a veth: %w", err)
			}
			if err := configureNetwork([]agent.Interface{{MAC: boot.String(), Spare: true}}); err != nil {
				return fmt.Errorf("park: %w", err)
			}
			if l, _ := linkByMAC(boot.String()); l != nil {
				return errors.New("the spare nic is still visible")
			}
			// Parking twice is fine (OpNetwork is idempotent).
			if err := configureNetwork([]agent.Interface{{MAC: boot.String(), Spare: true}}); err != nil {
				return fmt.Errorf("park again: %w", err)
			}
			ifc := agent.Interface{Name: "eth0", MAC: "02:00:00:00:00:02", BootMAC: boot.String(), MTU: 1400, Addrs: []string{"10.9.0.2/24"}}
			for i := 0; i < 2; i++ {
				if err := configureNetwork([]agent.Interface{ifc}); err != nil {
					return fmt.Errorf("take over (%d): %w", i, err)
				}
			}
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return fmt.Errorf("no eth0 after the take-over: %w", err)
			}
			if a := l.Attrs(); a.HardwareAddr.String() != ifc.MAC || a.MTU != 1400 {
				return fmt.Errorf("eth0 has mac %s mtu %d", a.HardwareAddr, a.MTU)
			}
			return nil
		}()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
