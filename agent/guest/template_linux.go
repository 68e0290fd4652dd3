package guest

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"unsafe"

	"github.com/runvirt/runvirt/agent"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// awaitWake is a template agent's last step of boot: it tells the host it
// is ready to be saved, and blocks until a Wake comes. The host saves the
// VM during the wait; each copy restored from it reads its own host's Wake
// and makes itself distinct from the template and its siblings.
func awaitWake(conn io.ReadWriter) error {
	if err := agent.WriteFrame(conn, agent.Hello{Version: agent.ProtocolVersion, Template: true}); err != nil {
		return err
	}
	var w agent.Wake
	if err := agent.ReadFrame(conn, &w); err != nil {
		return fmt.Errorf("wait for the host's wake: %w", err)
	}
	return applyWake(w)
}

// applyWake sets the clock to the host's and reseeds the kernel's random
// number generator from the host's seed.
func applyWake(w agent.Wake) error {
	if len(w.Seed) < agent.WakeSeedBytes {
		return fmt.Errorf("wake: %d bytes of seed, want at least %d", len(w.Seed), agent.WakeSeedBytes)
	}
	if w.UnixNano <= 0 {
		return fmt.Errorf("wake: no host time")
	}
	ts := unix.NsecToTimespec(w.UnixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("wake: set the clock: %w", err)
	}
	if err := reseed(w.Seed); err != nil {
		return fmt.Errorf("wake: %w", err)
	}
	for _, m := range w.MACs {
		if err := changeMAC(m.From, m.To); err != nil {
			return fmt.Errorf("wake: %w", err)
		}
	}
	slog.Info("restored from a template", "component", "boot", "since_kernel_start", sinceKernelStart())
	return nil
}

// reseed credits seed to the kernel's input pool (RNDADDENTROPY) and
// forces the CRNG to reseed from it now (RNDRESEEDCRNG): without the
// second, every copy would keep drawing from the template's CRNG state
// until its next scheduled reseed.
func reseed(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(len(seed)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))
	copy(info[8:], seed)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("reseed: add entropy: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("reseed: reseed the crng: %w", errno)
	}
	return nil
}

// changeMAC gives the NIC that has MAC from the MAC to.
func changeMAC(from, to string) error {
	hw, err := net.ParseMAC(to)
	if err != nil {
		return fmt.Errorf("nic %s: new mac %q: %w", from, to, err)
	}
	link, err := linkByMAC(strings.ToLower(from))
	if err != nil {
		return err
	}
	if link == nil {
		return fmt.Errorf("no nic with the template's mac %s", from)
	}
	if err := netlink.LinkSetHardwareAddr(link, hw); err != nil {
		return fmt.Errorf("nic %s: set mac %s: %w", from, to, err)
	}
	return nil
}
