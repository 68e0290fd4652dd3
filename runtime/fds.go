package runtime

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedFDs marks every file descriptor from 3 up close-on-exec.
// It runs first in every runvirt process: what a caller left open without
// close-on-exec (a directory such as /etc, a secret file, the fds of
// --preserve-fds, which cannot cross into a VM and are ignored) would
// otherwise reach every process runvirt starts, QEMU, virtiofsd, the
// monitor, the stand-ins and the hooks (the class of runc's
// CVE-2024-21626). What runvirt hands on deliberately it passes through
// exec.Cmd's ExtraFiles, which the child gets whatever this flag says; a
// hidden command's own fd 3 (its ready pipe) stays usable here and goes
// no further.
func CloseInheritedFDs() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Kernels before 5.11 have no CLOSE_RANGE_CLOEXEC: one at a time.
	ents, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("mark inherited fds close-on-exec: %w (and list /proc/self/fd: %w)", err, rerr)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return fmt.Errorf("mark fd %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
