package hypervisor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VhostVsockDevice is the host device QEMU's vhost-vsock backend needs.
const VhostVsockDevice = "/dev/vhost-vsock"

// vhostVsockSetGuestCID is VHOST_VSOCK_SET_GUEST_CID: _IOW(0xAF, 0x60, __u64).
const vhostVsockSetGuestCID = 0x4008AF60

// firstGuestCID is the lowest CID a guest may have (0-2 are reserved).
const firstGuestCID = 3

// VsockStatus says whether the vsock transport can be used.
type VsockStatus struct {
	Usable bool
	Reason string
}

// DetectVsock checks that /dev/vhost-vsock opens and that the host side of
// AF_VSOCK exists.
func DetectVsock() VsockStatus {
	f, err := os.OpenFile(VhostVsockDevice, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return VsockStatus{Reason: fmt.Sprintf("%v (try: modprobe vhost_vsock)", err)}
	}
	f.Close()
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return VsockStatus{Reason: fmt.Sprintf("AF_VSOCK socket: %v (try: modprobe vhost_vsock)", err)}
	}
	unix.Close(fd)
	return VsockStatus{Usable: true, Reason: VhostVsockDevice + " is usable"}
}

// ReserveCID opens /dev/vhost-vsock and claims a free guest CID on it with
// VHOST_VSOCK_SET_GUEST_CID. The CID stays reserved for as long as the
// returned file is open; QEMU gets the file as vhostfd, so the reservation and
// the device are one and two sandboxes can never collide (hashing the
// container ID, as runq did, can).
func ReserveCID() (*os.File, uint32, error) {
	f, err := os.OpenFile(VhostVsockDevice, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", VhostVsockDevice, err)
	}
	// Start at a random CID so that concurrent starts rarely contend.
	start := firstGuestCID + rand.Uint32N(1<<20)
	for i := uint32(0); i < 4096; i++ {
		cid := uint64(start + i)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&cid)))
		if errno == 0 {
			return f, uint32(cid), nil
		}
		if !errors.Is(errno, unix.EADDRINUSE) {
			f.Close()
			return nil, 0, fmt.Errorf("reserve guest cid %d: %w", cid, errno)
		}
	}
	f.Close()
	return nil, 0, errors.New("reserve guest cid: no free cid found")
}
