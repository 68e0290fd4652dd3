package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/runvirt/runvirt/config"
	"github.com/runvirt/runvirt/hypervisor"
	"golang.org/x/sys/unix"
)

// uidLease is one id of qemu_uid_range, held by a sandbox's monitor for
// the life of its QEMU: an flock on UIDLeaseDir/<id>. The kernel drops the
// lock when the monitor closes the file or dies (and its QEMU dies with
// it), so a crash leaks no id. The files stay: leases go to the lowest free
// id, so there are never more than the most sandboxes that ran at once.
type uidLease struct {
	id uint32
	f  *os.File
}

// leaseID takes the lowest id of first..last that no live sandbox holds.
func leaseID(dir string, first, last uint32) (*uidLease, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lease a qemu uid: %w", err)
	}
	for id := first; ; id++ {
		f, err := os.OpenFile(filepath.Join(dir, strconv.FormatUint(uint64(id), 10)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lease a qemu uid: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &uidLease{id: id, f: f}, nil
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lease qemu uid %d: %w", id, err)
		}
		if id == last {
			return nil, fmt.Errorf("lease a qemu uid: all %d ids of qemu_uid_range %d-%d are held by running sandboxes", uint64(last)-uint64(first)+1, first, last)
		}
	}
}

func (l *uidLease) release() {
	if l != nil {
		l.f.Close()
	}
}

// qemuUserOf is who the sandbox's QEMU runs as (nil: root), with the lease
// to release once QEMU is gone (nil unless qemu_user = "sandbox"). Under
// KVM the user gets /dev/kvm's group.
func qemuUserOf(cfg SandboxConfig, leaseDir string) (*hypervisor.User, *uidLease, error) {
	var u *hypervisor.User
	var lease *uidLease
	switch cfg.QEMUUser {
	case "":
		return nil, nil, nil
	case "sandbox":
		var err error
		if lease, err = leaseID(leaseDir, cfg.QEMUUIDs[0], cfg.QEMUUIDs[1]); err != nil {
			return nil, nil, err
		}
		u = &hypervisor.User{UID: lease.id, GID: lease.id}
	default:
		uid, gid, err := config.ParseUIDGID(cfg.QEMUUser)
		if err != nil {
			return nil, nil, fmt.Errorf("qemu user: %w", err)
		}
		u = &hypervisor.User{UID: uid, GID: gid}
	}
	if cfg.Accel == "kvm" {
		g, err := hypervisor.KVMGroups()
		if err != nil {
			lease.release()
			return nil, nil, fmt.Errorf("qemu user %s: %w", u, err)
		}
		u.Groups = g
	}
	for _, p := range []string{cfg.Kernel, cfg.Initrd} {
		if err := hypervisor.CheckReadable(p, u); err != nil {
			lease.release()
			return nil, nil, fmt.Errorf("qemu runs as %s, which cannot read %s: %w (make it readable by other users, or set qemu_user = \"root\")", u, p, err)
		}
	}
	return u, lease, nil
}
