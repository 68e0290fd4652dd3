package guest

import (
	"errors"
	"net"
	"testing"

	"github.com/runvirt/runvirt/agent"
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
