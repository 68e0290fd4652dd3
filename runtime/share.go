package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The guest sees the host only through one shared directory per sandbox.
// The container's rootfs and the sources of its bind mounts are bind-mounted
// into it on the host, and the spec handed to the agent names their guest
// paths instead. Read-only bind mounts are read-only on the host side too,
// so a compromised guest cannot write through them.

// prepareShare bind-mounts the rootfs and the spec's bind-mount sources into
// the share and returns a copy of the spec rewritten for the guest. Undo
// steps go on cl.
func prepareShare(d Dir, cid string, b *Bundle, cl *cleanup) (*specs.Spec, error) {
	if err := makeShare(d.Share()); err != nil {
		return nil, err
	}
	base := filepath.Join(d.Share(), cid)
	cl.Add(func() { removeMounted(base) })

	rootDst := d.ShareRootfs(cid)
	if b.Spec.Root.Readonly {
		// The guest cannot create mountpoints in a rootfs that is read-only
		// on the host side: make them now, as runc would before remounting
		// the root read-only.
		precreateMountpoints(b)
	}
	if err := bindMount(b.Rootfs, rootDst, true, b.Spec.Root.Readonly, false); err != nil {
		return nil, fmt.Errorf("share rootfs: %w", err)
	}

	spec := *b.Spec
	spec.Mounts = make([]specs.Mount, len(b.Spec.Mounts))
	for i, m := range b.Spec.Mounts {
		spec.Mounts[i] = m
		if !isBind(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		ro, rec, follow := false, false, false
		for _, o := range m.Options {
			switch o {
			case "ro":
				ro = true
			case "rbind":
				rec = true
			case "slave", "rslave", "shared", "rshared":
				// Host to container: what is mounted under the source later
				// shows in the container (Kubernetes' HostToContainer). The
				// way back, Bidirectional's container to host, a VM cannot
				// give: mounts made in the guest stay in the guest.
				follow = true
			}
		}
		dst := d.ShareMount(cid, i, src)
		if err := bindMount(src, dst, rec, ro, follow); err != nil {
			return nil, fmt.Errorf("share mount %s: %w", m.Destination, err)
		}
		spec.Mounts[i].Source = GuestMount(cid, i, src)
	}
	return &spec, nil
}

// precreateMountpoints creates the spec's missing mountpoints in the
// rootfs: directories, or empty files for file bind mounts. Paths resolve
// inside the rootfs (os.Root): a symlink that leads out of it is left to the
// guest, which reports what it cannot do.
func precreateMountpoints(b *Bundle) {
	root, err := os.OpenRoot(b.Rootfs)
	if err != nil {
		return
	}
	defer root.Close()
	for _, m := range b.Spec.Mounts {
		dst := strings.TrimPrefix(filepath.Clean(m.Destination), "/")
		if dst == "" {
			continue
		}
		if _, err := root.Lstat(dst); err == nil {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		if st, err := os.Stat(src); err == nil && isBind(m) && !st.IsDir() {
			if root.MkdirAll(filepath.Dir(dst), 0o755) == nil {
				if f, err := root.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
			continue
		}
		root.MkdirAll(dst, 0o755)
	}
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// makeShare makes the share directory, once per sandbox. It is a mount of
// its own with shared propagation in a peer group of its own: virtiofsd
// runs in a mount namespace whose mounts are slaves of the host's, so what
// is bound into the share later (a pod's next container) reaches it, and
// what is unmounted leaves it.
func makeShare(share string) error {
	// Traversable by all: root in a container's user namespace is not root
	// on these directories. The state directory above stays private.
	if err := os.MkdirAll(share, 0o711); err != nil {
		return fmt.Errorf("make share: %w", err)
	}
	os.Chmod(share, 0o711)
	mounts, err := mountsUnder(share)
	if err != nil {
		return err
	}
	if slices.Contains(mounts, share) {
		return nil
	}
	if err := unix.Mount(share, share, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind share %s: %w", share, err)
	}
	// Private first: a bind joins its source's peer group, and the share
	// must not swap mount events with the filesystem it lives on.
	if err := unix.Mount("", share, "", unix.MS_PRIVATE, ""); err != nil {
		unix.Unmount(share, unix.MNT_DETACH)
		return fmt.Errorf("make share %s private: %w", share, err)
	}
	if err := unix.Mount("", share, "", unix.MS_SHARED, ""); err != nil {
		unix.Unmount(share, unix.MNT_DETACH)
		return fmt.Errorf("make share %s shared: %w", share, err)
	}
	return nil
}

// bindMount binds src (a file or a directory) onto dst, creating dst, and
// makes it read-only if asked (recursively for a recursive bind). Unless
// follow is set, the bind is cut off from the source's propagation before it
// is attached, so that nothing mounted later below the source leaks into the
// share. With follow it is a slave of the source's peer group (mounts made
// below a shared source later reach it) and shared on, so that virtiofsd's
// copy of it receives them too. Either way it is read-only before the
// share's propagation copies it anywhere.
func bindMount(src, dst string, recursive, readonly, follow bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o711); err != nil {
		return err
	}
	if st.IsDir() {
		err = os.Mkdir(dst, 0o711)
	} else {
		var f *os.File
		f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("make mountpoint: %w", err)
	}
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, uint(flags))
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if follow {
		attr.Propagation = unix.MS_SLAVE
	}
	if readonly {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("bind %s: set attributes: %w", src, err)
	}
	if follow {
		shared := &unix.MountAttr{Propagation: unix.MS_SHARED}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, shared); err != nil {
			return fmt.Errorf("bind %s: make it shared: %w", src, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s to %s: %w", src, dst, err)
	}
	return nil
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir in mount order.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeMounted unmounts everything below dir and then removes it. It never
// removes anything while a mount is left below dir: that would delete the
// user's files through a bind mount.
func removeMounted(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	left, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(left, ", "))
	}
	// The mount table is read by path; should dir ever be named otherwise
	// than the kernel names it, a mount would be missed there. The mount ids
	// of the tree itself cannot be missed: never delete across one.
	if err := checkOneMount(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// checkOneMount fails if any directory below dir is on another mount than
// dir itself. It does not follow symlinks.
func checkOneMount(dir string) error {
	var top uint64
	return filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !de.IsDir() {
			return nil
		}
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
			return fmt.Errorf("statx %s: %w", p, err)
		}
		if p == dir {
			top = st.Mnt_id
		} else if st.Mnt_id != top {
			return fmt.Errorf("%s is a mount point the mount table did not list under %s", p, dir)
		}
		return nil
	})
}
