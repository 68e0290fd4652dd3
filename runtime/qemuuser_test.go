package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runvirt/runvirt/config"
)

// Each live lease holds its own id, the lowest free one; a released id is
// handed out again; a full range is an error that says so.
func TestLeaseID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "uids")
	a, err := leaseID(dir, 100, 102)
	if err != nil {
		t.Fatal(err)
	}
	b, err := leaseID(dir, 100, 102)
	if err != nil {
		t.Fatal(err)
	}
	c, err := leaseID(dir, 100, 102)
	if err != nil {
		t.Fatal(err)
	}
	if a.id != 100 || b.id != 101 || c.id != 102 {
		t.Fatalf("ids %d %d %d, want 100 101 102", a.id, b.id, c.id)
	}
	if _, err := leaseID(dir, 100, 102); err == nil || !strings.Contains(err.Error(), "all 3 ids") {
		t.Fatalf("a full range: %v", err)
	}
	b.release()
	d, err := leaseID(dir, 100, 102)
	if err != nil || d.id != 101 {
		t.Fatalf("after a release: %v %v", d, err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("lease dir: %v %v", fi, err)
	}
	a.release()
	c.release()
	d.release()
	// The top of the id space does not wrap around.
	top, err := leaseID(dir, 4294967294, 4294967294)
	if err != nil || top.id != 4294967294 {
		t.Fatalf("top id: %v %v", top, err)
	}
	if _, err := leaseID(dir, 4294967294, 4294967294); err == nil {
		t.Fatal("a second lease of a one-id range")
	}
	top.release()
}

func TestQEMUUserOf(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd.img")
	os.WriteFile(kernel, nil, 0o644)
	os.WriteFile(initrd, nil, 0o644)
	leases := filepath.Join(t.TempDir(), "uids")
	cfg := SandboxConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", QEMUUser: "sandbox", QEMUUIDs: [2]uint32{500, 501}}

	u, l, err := qemuUserOf(cfg, leases)
	if err != nil || u == nil || u.UID != 500 || u.GID != 500 || len(u.Groups) != 0 || l == nil {
		t.Fatalf("sandbox: %v %v %v", u, l, err)
	}
	u2, l2, err := qemuUserOf(cfg, leases)
	if err != nil || u2.UID != 501 {
		t.Fatalf("a second sandbox must get another uid: %v %v", u2, err)
	}
	l.release()
	l2.release()

	if u, l, err := qemuUserOf(SandboxConfig{Kernel: kernel, Initrd: initrd, QEMUUser: "7:8"}, leases); err != nil || u.UID != 7 || u.GID != 8 || l != nil {
		t.Errorf("7:8: %v %v %v", u, l, err)
	}
	if u, l, err := qemuUserOf(SandboxConfig{Kernel: kernel, Initrd: initrd}, leases); err != nil || u != nil || l != nil {
		t.Errorf("root: %v %v %v", u, l, err)
	}

	// A kernel QEMU's user cannot read is refused before QEMU starts, and
	// the id goes back.
	os.Chmod(kernel, 0o600)
	if _, _, err := qemuUserOf(cfg, leases); err == nil || !strings.Contains(err.Error(), "cannot read "+kernel) || !strings.Contains(err.Error(), `qemu_user = "root"`) {
		t.Errorf("unreadable kernel: %v", err)
	}
	os.Chmod(kernel, 0o644)
	if u, l, err := qemuUserOf(cfg, leases); err != nil || u.UID != 500 {
		t.Errorf("the refused sandbox's id was not released: %v %v", u, err)
	} else {
		l.release()
	}
}

func TestResolveQEMUUser(t *testing.T) {
	for _, tc := range []struct {
		text, user string
		ids        [2]uint32
	}{
		{``, "sandbox", [2]uint32{1879048192, 1879113727}},
		{`qemu_uid_range = "10-20"`, "sandbox", [2]uint32{10, 20}},
		{`qemu_user = "root"`, "", [2]uint32{}},
		{`qemu_user = "0:0"`, "", [2]uint32{}},
		{`qemu_user = "1000:1001"`, "1000:1001", [2]uint32{}},
		{`qemu_user = "nobody"`, "65534:65534", [2]uint32{}},
		// 9p's server needs root.
		{"shared_fs = \"9p\"\nqemu_user = \"1000:1000\"", "", [2]uint32{}},
	} {
		c, err := config.Parse(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		user, ids, err := resolveQEMUUser(c)
		if err != nil || user != tc.user || ids != tc.ids {
			t.Errorf("%q: %q %v %v, want %q %v", tc.text, user, ids, err, tc.user, tc.ids)
		}
	}
	c, _ := config.Parse(`qemu_user = "no-such-user-here"`)
	if _, _, err := resolveQEMUUser(c); err == nil || !strings.Contains(err.Error(), "qemu_user") {
		t.Errorf("unknown user: %v", err)
	}
}
