package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What real pods do with the guest kernel's network: CNI in a pod makes a
// bridge, veth pairs and taps; Istio-style init containers write iptables
// nat rules (REDIRECT, owner, mark, conntrack); newer tools speak nftables.
// A privileged container runs Debian's own ip, iptables-nft and nft (the
// host's /usr, read-only) and every step must work.
func TestGuestBridgeVethNetfilter(t *testing.T) {
	e := newEnv(t)
	rel, _ := os.ReadFile(filepath.Join(guestDir, "kernel.release"))
	if !strings.HasSuffix(strings.TrimSpace(string(rel)), "-runvirt") {
		// The distro kernel's guest image carries only the modules the
		// guest's own devices need, none of netfilter's.
		t.Skipf("skipping: the guest image has the distro kernel %s, without netfilter modules (run: make GUEST_KERNEL=minimal)", strings.TrimSpace(string(rel)))
	}
	for _, p := range []string{"/usr/bin/ip", "/usr/sbin/xtables-nft-multi", "/usr/sbin/nft", "/etc/ld.so.cache"} {
		if !exists(p) {
			t.Fatalf("%s is missing on the host (run: make deps)", p)
		}
	}
	rootfs := filepath.Join(e.bundle, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "usr"), 0o755)
	// Merged /usr, as on the host: the dynamic loader and the libraries
	// are found through these.
	for link, target := range map[string]string{"lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(rootfs, "etc", "ld.so.cache"), nil, 0o644)
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/usr", Type: "bind", Source: "/usr", Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/etc/ld.so.cache", Type: "bind", Source: "/etc/ld.so.cache", Options: []string{"bind", "ro"}})
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: allCaps, Effective: allCaps, Permitted: allCaps}
	e.spec.Process.NoNewPrivileges = false
	e.spec.Linux.ReadonlyPaths = nil

	ipt := "/usr/sbin/xtables-nft-multi iptables"
	script := strings.Join([]string{
		"set -e",
		"/usr/bin/ip link add br0 type bridge",
		"/usr/bin/ip link add v0 type veth peer name v1",
		"/usr/bin/ip link set v0 master br0",
		"/usr/bin/ip link set br0 up",
		"echo bridged: $(/usr/bin/ip -o link show master br0 | cut -d: -f2)",
		"mkdir -p /dev/net && mknod /dev/net/tun c 10 200",
		"/usr/bin/ip tuntap add dev tap0 mode tap",
		"echo tap: $(/usr/bin/ip -o link show tap0 | cut -d: -f2)",
		ipt + " -t nat -A OUTPUT -p tcp --dport 80 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001",
		ipt + " -t nat -A POSTROUTING -o v0 -j MASQUERADE",
		ipt + " -t mangle -A PREROUTING -m mark --mark 0x1 -j ACCEPT",
		ipt + " -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		ipt + " -t nat -S OUTPUT",
		"echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables",
		"/usr/sbin/nft add table inet runvirt",
		"/usr/sbin/nft add chain inet runvirt in '{ type filter hook input priority 0; }'",
		"/usr/sbin/nft add rule inet runvirt in tcp dport 9 drop",
		"/usr/sbin/nft list table inet runvirt",
		"echo all-done",
	}, "\n")
	r := e.runArgs("guestnet", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0: stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		"bridged: v0@v1",
		"tap: tap0",
		"-A OUTPUT -p tcp -m tcp --dport 80 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001",
		"tcp dport 9 drop",
		"all-done",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}
