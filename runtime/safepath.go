package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host-side work below a directory that anything else could ever have
// written (the share, whose content the guest sees) must not be steered by
// what it finds there: a directory swapped for a symlink to a host path
// would otherwise make the host create, mount and unmount outside it (Kata
// Containers' CVE-2020-2026). Paths are walked here from an open directory,
// one component at a time, with openat2 refusing symlinks, magic links and
// anything that resolves outside the directory, and mounts are attached and
// detached through file descriptors, never by a path that could be swapped
// between the check and the use.

// beneathFlags are the resolve flags of every walk below a directory.
const beneathFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// splitBeneath checks rel, a path relative to a directory, and returns its
// components. Anything that is not a plain downward path is refused rather
// than cleaned: a caller that builds "a/../b" has a bug, and a name from
// elsewhere that holds one is an attack.
func splitBeneath(rel string) ([]string, error) {
	if rel == "" || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("path %q: want a relative path", rel)
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, fmt.Errorf("path %q: empty, '.' or '..' component", rel)
		}
	}
	return parts, nil
}

// openat2 opens name relative to dir with how's flags, retrying on EINTR
// and EAGAIN (which openat2 returns when a rename raced the walk).
func openat2(dir int, name string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dir, name, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// fdFile wraps a descriptor as a file named for error messages.
func fdFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

// openBeneath opens rel below dir as an O_PATH descriptor, refusing any
// symlink on the way, the last component included. Mount points are
// crossed: the result is what is mounted there.
func openBeneath(dir *os.File, rel string) (*os.File, error) {
	if _, err := splitBeneath(rel); err != nil {
		return nil, err
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: beneathFlags}
	fd, err := openat2(int(dir.Fd()), rel, how)
	if err != nil {
		return nil, fmt.Errorf("open %s below %s: %w", rel, dir.Name(), err)
	}
	return fdFile(fd, filepath.Join(dir.Name(), rel)), nil
}

// mkdirAllBeneath makes every missing directory of rel below dir and
// returns the last one open (O_PATH). Each step is one component opened
// from its parent's descriptor: a symlink, a file or a mount in the way is
// an error, never followed or crossed.
func mkdirAllBeneath(dir *os.File, rel string, mode uint32) (*os.File, error) {
	parts, err := splitBeneath(rel)
	if err != nil {
		return nil, err
	}
	cur := dir
	for i, p := range parts {
		if err := unix.Mkdirat(int(cur.Fd()), p, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			closeUnless(cur, dir)
			return nil, fmt.Errorf("mkdir %s below %s: %w", filepath.Join(parts[:i+1]...), dir.Name(), err)
		}
		how := &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: beneathFlags | unix.RESOLVE_NO_XDEV,
		}
		fd, err := openat2(int(cur.Fd()), p, how)
		closeUnless(cur, dir)
		if err != nil {
			return nil, fmt.Errorf("open %s below %s: %w", filepath.Join(parts[:i+1]...), dir.Name(), err)
		}
		cur = fdFile(fd, filepath.Join(cur.Name(), p))
	}
	return cur, nil
}

func closeUnless(f, keep *os.File) {
	if f != keep {
		f.Close()
	}
}

// makeMountpointBeneath creates rel below dir as a new, empty mount point
// (a directory, or a file for a file's bind) and returns it open (O_PATH).
// It must not exist yet: a mount point the host did not just make could be
// anything.
func makeMountpointBeneath(dir *os.File, rel string, isDir bool) (*os.File, error) {
	parts, err := splitBeneath(rel)
	if err != nil {
		return nil, err
	}
	parent := dir
	if len(parts) > 1 {
		if parent, err = mkdirAllBeneath(dir, filepath.Join(parts[:len(parts)-1]...), 0o711); err != nil {
			return nil, err
		}
		defer parent.Close()
	}
	name := parts[len(parts)-1]
	if isDir {
		err = unix.Mkdirat(int(parent.Fd()), name, 0o711)
	} else {
		// O_EXCL: a symlink there is not followed but fails with EEXIST.
		var fd int
		how := &unix.OpenHow{Flags: unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Mode: 0o600, Resolve: beneathFlags}
		if fd, err = openat2(int(parent.Fd()), name, how); err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("make mount point %s below %s: %w", rel, dir.Name(), err)
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: beneathFlags | unix.RESOLVE_NO_XDEV}
	fd, err := openat2(int(parent.Fd()), name, how)
	if err != nil {
		return nil, fmt.Errorf("open mount point %s below %s: %w", rel, dir.Name(), err)
	}
	return fdFile(fd, filepath.Join(dir.Name(), rel)), nil
}

// attachMount moves the detached mount tree (from open_tree) onto the
// mount point target, an open descriptor: no path is looked up again.
func attachMount(tree int, target *os.File) error {
	if err := unix.MoveMount(tree, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach mount on %s: %w", target.Name(), err)
	}
	return nil
}

// procFD names f's descriptor in /proc/self/fd, by which the path-based
// calls (umount2) act on the very file f holds.
func procFD(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// unmountBeneath detaches the mount at rel below dir, with everything
// mounted below it. Nothing is unmounted unless rel reaches it without a
// symlink: a path the guest rearranged cannot point the unmount at a host
// mount. It reports whether there was a mount to detach.
func unmountBeneath(dir *os.File, rel string) (bool, error) {
	f, err := openBeneath(dir, rel)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, 0, &st); err != nil {
		return false, fmt.Errorf("statx %s: %w", f.Name(), err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, nil
	}
	if err := unix.Unmount(procFD(f), unix.MNT_DETACH); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return false, nil // not a mount point (any more)
		}
		return false, fmt.Errorf("unmount %s: %w", f.Name(), err)
	}
	return true, nil
}

// openSource resolves a bind mount's source once and opens it (O_PATH), so
// that what is mounted is what was checked, however the path changes
// later: the kernel resolves the path (its symlinks and its "..", as it
// would for runc's mount) and names what it opened, and that name is what
// is checked and shown to the guest. Magic links (/proc/PID/fd/N, ...) are
// refused: they name no path. So are sources in runvirt's own state (the
// state root, the socket directories): a guest must never see, let alone
// write, the host's files about its sandbox or another's.
func openSource(src string, private []string) (*os.File, string, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2(unix.AT_FDCWD, src, how)
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", src, err)
	}
	resolved, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("resolve %s: %w", src, err)
	}
	// A path the kernel cannot name from here (unlinked, or outside this
	// process's root) is no source to bind.
	if !filepath.IsAbs(resolved) || filepath.Clean(resolved) != resolved || strings.HasSuffix(resolved, " (deleted)") {
		unix.Close(fd)
		return nil, "", fmt.Errorf("%s resolves to %q, which is no path on this host: refused", src, resolved)
	}
	for _, p := range private {
		if p == "" {
			continue
		}
		if resolved == p || strings.HasPrefix(resolved, strings.TrimSuffix(p, "/")+"/") {
			unix.Close(fd)
			return nil, "", fmt.Errorf("%s resolves to %s, in runvirt's own state under %s: refused", src, resolved, p)
		}
	}
	return fdFile(fd, resolved), resolved, nil
}
