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
//
// The directories around those binds are the host's alone: they live in the
// share's skeleton, and the guest gets a read-only bind of it. Nothing the
// guest does can then plant a symlink where the host later makes, mounts or
// removes something, nor fill the state directory's filesystem (a tmpfs on
// most hosts); it writes only through the binds, to their own storage. The
// host still walks the skeleton only from open directories, never
// following a symlink (safepath.go), in case anything else ever wrote it.

const (
	shareSkeletonName = "share-skeleton" // see Dir.ShareSkeleton
	shareExportName   = "shared"         // see Dir.Share
)

// prepareShare bind-mounts the rootfs and the spec's bind-mount sources into
// the share and returns a copy of the spec rewritten for the guest. Undo
// steps go on cl.
func prepareShare(d Dir, cid string, b *Bundle, cl *cleanup) (*specs.Spec, error) {
	skel, err := makeShare(d)
	if err != nil {
		return nil, err
	}
	defer skel.Close()
	cl.Add(func() { removeShared(d, cid) })

	// Every source is resolved and opened once, before anything is made:
	// what is mounted is what was checked, however the paths change later.
	private := []string{d.Root, SocketBase}
	rootfs, _, err := openSource(b.Rootfs, private)
	if err != nil {
		return nil, fmt.Errorf("share rootfs: %w", err)
	}
	defer rootfs.Close()
	spec := *b.Spec
	spec.Mounts = make([]specs.Mount, len(b.Spec.Mounts))
	sources := make([]*os.File, len(b.Spec.Mounts))
	defer func() {
		for _, f := range sources {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, m := range b.Spec.Mounts {
		spec.Mounts[i] = m
		if !isBind(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		f, resolved, err := openSource(src, private)
		if err != nil {
			return nil, fmt.Errorf("share mount %s: %w", m.Destination, err)
		}
		sources[i] = f
		spec.Mounts[i].Source = resolved
	}

	if b.Spec.Root.Readonly {
		// The guest cannot create mountpoints in a rootfs that is read-only
		// on the host side: make them now, as runc would before remounting
		// the root read-only.
		precreateMountpoints(procFD(rootfs), spec.Mounts, sources)
	}
	if err := bindMount(rootfs, skel, ShareRootfs(cid), true, b.Spec.Root.Readonly, false); err != nil {
		return nil, fmt.Errorf("share rootfs: %w", err)
	}
	for i, m := range spec.Mounts {
		if sources[i] == nil {
			continue
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
		if err := bindMount(sources[i], skel, ShareMount(cid, i, m.Source), rec, ro, follow); err != nil {
			return nil, fmt.Errorf("share mount %s: %w", m.Destination, err)
		}
		spec.Mounts[i].Source = GuestMount(cid, i, m.Source)
	}
	return &spec, nil
}

// precreateMountpoints creates the spec's missing mountpoints in the
// rootfs: directories, or empty files for file bind mounts (sources[i] is
// the open source of mounts[i], nil for other mounts). Paths resolve inside
// the rootfs (os.Root): a symlink that leads out of it is left to the
// guest, which reports what it cannot do.
func precreateMountpoints(rootfs string, mounts []specs.Mount, sources []*os.File) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return
	}
	defer root.Close()
	for i, m := range mounts {
		dst := strings.TrimPrefix(filepath.Clean(m.Destination), "/")
		if dst == "" {
			continue
		}
		if _, err := root.Lstat(dst); err == nil {
			continue
		}
		if i < len(sources) && sources[i] != nil {
			if st, err := sources[i].Stat(); err == nil && !st.IsDir() {
				if root.MkdirAll(filepath.Dir(dst), 0o755) == nil {
					if f, err := root.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
						f.Close()
					}
				}
				continue
			}
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

// makeShare makes the share, once per sandbox, and returns its skeleton
// open. The skeleton is a mount of its own with shared propagation in a
// peer group of its own; the export is a read-only bind of it in that peer
// group. virtiofsd runs in a mount namespace whose mounts are slaves of the
// host's, so what is bound into the skeleton later (a pod's next container)
// reaches the export and virtiofsd's copy of it, and what is unmounted
// leaves them.
func makeShare(d Dir) (*os.File, error) {
	state, err := os.OpenFile(d.Path(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("make share: %w", err)
	}
	defer state.Close()
	// Traversable by all: root in a container's user namespace is not root
	// on these directories. The state directory above stays private.
	fresh := true
	for _, n := range []string{shareSkeletonName, shareExportName} {
		if err := unix.Mkdirat(int(state.Fd()), n, 0o711); errors.Is(err, unix.EEXIST) {
			fresh = fresh && n != shareSkeletonName
		} else if err != nil {
			return nil, fmt.Errorf("make share: %w", err)
		}
	}
	skel, err := openBeneath(state, shareSkeletonName)
	if err != nil {
		return nil, fmt.Errorf("make share: %w", err)
	}
	if mounted, err := isMountRoot(skel); err != nil {
		skel.Close()
		return nil, fmt.Errorf("make share: %w", err)
	} else if !mounted {
		// Private first: a bind joins its source's peer group, and the
		// skeleton must not swap mount events with the filesystem it lives
		// on.
		err := mountClone(skel, skel, false, &unix.MountAttr{Propagation: unix.MS_PRIVATE}, &unix.MountAttr{Propagation: unix.MS_SHARED})
		skel.Close()
		if err != nil {
			return nil, fmt.Errorf("make share skeleton: %w", err)
		}
		if skel, err = openBeneath(state, shareSkeletonName); err != nil {
			return nil, fmt.Errorf("make share: %w", err)
		}
	}
	export, err := openBeneath(state, shareExportName)
	if err != nil {
		skel.Close()
		return nil, fmt.Errorf("make share: %w", err)
	}
	defer export.Close()
	mounted, err := isMountRoot(export)
	if err == nil && mounted && fresh {
		// The export was there before its skeleton: a sandbox an older
		// runvirt made, whose guest writes its share. Binds made in a new
		// skeleton would not reach it.
		skel.Close()
		return nil, fmt.Errorf("make share: sandbox %s was created by an older runvirt, whose share the guest could write: recreate the sandbox", d.ID)
	}
	if err != nil || !mounted {
		// Not recursive, and the clone stays in the skeleton's peer group:
		// the binds that propagate into it keep their own flags, so the
		// rootfs and volumes stay writable where they should be.
		if err == nil {
			err = mountClone(skel, export, false, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV})
		}
		if err != nil {
			skel.Close()
			return nil, fmt.Errorf("make share export: %w", err)
		}
	}
	return skel, nil
}

// isMountRoot reports whether f is the root of a mount.
func isMountRoot(f *os.File) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, 0, &st); err != nil {
		return false, fmt.Errorf("statx %s: %w", f.Name(), err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx %s: the kernel does not report mount roots (Linux 5.8 or later)", f.Name())
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// mountClone clones the mount at src (with what is mounted below it if
// recursive), applies attrs to the clone in order, and attaches it on
// target, all by descriptor.
func mountClone(src, target *os.File, recursive bool, attrs ...*unix.MountAttr) error {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(int(src.Fd()), "", uint(flags))
	if err != nil {
		return fmt.Errorf("clone %s: %w", src.Name(), err)
	}
	defer unix.Close(tree)
	for _, a := range attrs {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, a); err != nil {
			return fmt.Errorf("clone of %s: set attributes: %w", src.Name(), err)
		}
	}
	return attachMount(tree, target)
}

// bindMount binds src (an open file or directory) onto rel below the
// skeleton, creating the mount point, and makes it read-only if asked
// (recursively for a recursive bind). Unless follow is set, the bind is cut
// off from the source's propagation before it is attached, so that nothing
// mounted later below the source leaks into the share. With follow it is a
// slave of the source's peer group (mounts made below a shared source later
// reach it) and shared on, so that the export and virtiofsd's copy of it
// receive them too. Either way it is read-only before the share's
// propagation copies it anywhere.
func bindMount(src, skel *os.File, rel string, recursive, readonly, follow bool) error {
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	target, err := makeMountpointBeneath(skel, rel, st.IsDir())
	if err != nil {
		return err
	}
	defer target.Close()
	attr := &unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if follow {
		attr.Propagation = unix.MS_SLAVE
	}
	if readonly {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	}
	attrs := []*unix.MountAttr{attr}
	if follow {
		attrs = append(attrs, &unix.MountAttr{Propagation: unix.MS_SHARED})
	}
	if err := mountClone(src, target, recursive, attrs...); err != nil {
		return fmt.Errorf("bind %s: %w", src.Name(), err)
	}
	return nil
}

// unmountUnder detaches every mount at or below dir, a directory only the
// host writes. Mounts go in mount order, each with what is mounted below
// it: once a bind is detached, its submounts are gone with it and never
// unmounted by a path through the bind, which the guest may have
// rearranged. Each is reached from dir without following a symlink
// (unmountBeneath); one whose path was rearranged is skipped here, goes
// with its parent, and is caught by the caller's check if it does not.
func unmountUnder(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) == 0 {
		return nil
	}
	if slices.Contains(mounts, dir) {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return nil
	}
	top, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("unmount below %s: %w", dir, err)
	}
	defer top.Close()
	var errs []error
	for _, m := range mounts {
		rel, err := filepath.Rel(dir, m)
		if err != nil || rel == "." {
			continue
		}
		_, err = unmountBeneath(top, rel)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTDIR):
		default:
			errs = append(errs, err)
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
	return removeMountedBelow(dir, dir)
}

// removeShared takes a container's (or the debug shell's) binds out of the
// sandbox's share and removes its directory from the skeleton.
func removeShared(d Dir, name string) error {
	return removeMountedBelow(filepath.Join(d.ShareSkeleton(), name),
		filepath.Join(d.ShareSkeleton(), name), filepath.Join(d.Share(), name))
}

// removeMountedBelow unmounts everything below each of dirs, checks that
// nothing is left mounted there, and removes dir.
func removeMountedBelow(dir string, dirs ...string) error {
	for _, m := range dirs {
		if err := unmountUnder(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, m := range dirs {
		left, err := mountsUnder(m)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(left, ", "))
		}
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
