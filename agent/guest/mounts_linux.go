package guest

// The container's filesystem view, built by the init child in its new mount
// namespace: the spec's mounts, runc's default devices, pivot_root, and the
// masked and read-only paths. Nothing here may propagate back to the agent,
// which is why / is made a slave first.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runvirt/runvirt/agent"
)

// mountFlag is one mount(8)-style option that maps to a mount(2) flag.
type mountFlag struct {
	clear bool // the option clears flag rather than setting it
	flag  uintptr
}

// mountFlags is runc's table of options that are flags, not filesystem data.
var mountFlags = map[string]mountFlag{
	"acl":           {false, unix.MS_POSIXACL},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noacl":         {true, unix.MS_POSIXACL},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// propagationFlags are applied by separate mount(2) calls after the mount.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ignoredOptions are runc extensions that have no mount(2) meaning here.
var ignoredOptions = map[string]bool{"tmpcopyup": true}

// mountOptions is a spec mount's options, parsed.
type mountOptions struct {
	flags       uintptr
	propagation []uintptr
	data        string // comma-separated filesystem options
}

// parseMountOptions splits options into mount(2) flags, propagation changes
// and filesystem data, the way runc does; unknown options are data.
func parseMountOptions(options []string) mountOptions {
	var o mountOptions
	var data []string
	for _, opt := range options {
		if f, ok := mountFlags[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[opt]; ok {
			o.propagation = append(o.propagation, p)
			continue
		}
		if ignoredOptions[opt] {
			continue
		}
		data = append(data, opt)
	}
	o.data = strings.Join(data, ",")
	return o
}

// isBind reports whether a spec mount is a bind mount: runc treats the type
// "bind" and any mount with a bind/rbind option alike.
func isBind(m specs.Mount, o mountOptions) bool {
	return m.Type == "bind" || o.flags&unix.MS_BIND != 0
}

// needsRemount reports whether a bind mount needs a second mount(2) call:
// MS_BIND ignores every other flag (ro, nosuid, ...) on the first.
func needsRemount(flags uintptr) bool {
	return flags&^(unix.MS_BIND|unix.MS_REC|unix.MS_REMOUNT) != 0
}

// prepareRootfs builds the container's mount tree under rootfs and pivots
// into it. On return the process's root and cwd are the container's /.
// cgroup is the container's cgroup directory in the agent's tree ("" for
// none), see mountOne.
func prepareRootfs(spec *specs.Spec, rootfs, cgroup string, proc *procTree) error {
	if err := unix.Mount("", "/", "", initialPropagation(spec), ""); err != nil {
		return fmt.Errorf("make / a slave: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	userns := newUserNS(spec)
	for _, m := range spec.Mounts {
		if err := mountOne(rootfs, m, userns, cgroup, proc); err != nil {
			return err
		}
	}
	if setupDevNeeded(spec) {
		if err := createDevices(rootfs, spec, userns); err != nil {
			return err
		}
		if err := devSymlinks(rootfs); err != nil {
			return err
		}
	}
	return pivotRoot(rootfs)
}

// initialPropagation is what / becomes before anything is mounted: a slave
// unless the spec asks for private or unbindable, so that nothing propagates
// back into the agent. A shared rootfsPropagation is applied after the pivot.
func initialPropagation(spec *specs.Spec) uintptr {
	if spec.Linux != nil {
		switch p := propagationFlags[spec.Linux.RootfsPropagation]; p &^ unix.MS_REC {
		case unix.MS_PRIVATE, unix.MS_SLAVE, unix.MS_UNBINDABLE:
			return p
		}
	}
	return unix.MS_SLAVE | unix.MS_REC
}

// mountOne performs one spec mount under rootfs. A cgroup mount (of either
// type) is cgroup2 made in the container's cgroup namespace, so its root is
// the container's own cgroup (cgroup, in the agent's tree). In a user
// namespace, sysfs and cgroup2 can only be mounted when the network and
// cgroup namespaces are the container's own; otherwise the agent's are bound
// instead, as runc does: for cgroup2 the container's directory, never the
// guest's root. A proc mount is the pod sandbox's where proc is not nil
// (see sandboxProcTree).
func mountOne(rootfs string, m specs.Mount, userns bool, cgroup string, proc *procTree) error {
	if !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("mount %s: destination must be absolute", m.Destination)
	}
	dst, err := secureJoin(rootfs, m.Destination)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	o := parseMountOptions(m.Options)
	bind := isBind(m, o)
	if err := createMountpoint(dst, m.Source, bind); err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	switch {
	case bind:
		err = bindMount(m.Source, dst, o)
	case m.Type == "cgroup" || m.Type == "cgroup2":
		// The guest runs cgroup v2 only; a v1 request gets the v2 tree.
		err = unix.Mount("cgroup2", dst, "cgroup2", o.flags, o.data)
		if userns && errors.Is(err, unix.EPERM) {
			src := cgroup
			if src == "" {
				src = cgroupRoot
			}
			err = bindAgentMount(src, dst, o)
		}
	case m.Type == "proc" && proc != nil:
		err = proc.mount(dst, o)
	default:
		err = unix.Mount(m.Source, dst, m.Type, o.flags, o.data)
		if userns && m.Type == "sysfs" && errors.Is(err, unix.EPERM) {
			err = bindAgentMount("/sys", dst, o)
		}
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	for _, p := range o.propagation {
		if err := unix.Mount("", dst, "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

// bindAgentMount binds the agent's own mount tree at src (still visible:
// the pivot has not happened yet) with the spec mount's flags.
func bindAgentMount(src, dst string, o mountOptions) error {
	o.flags |= unix.MS_BIND | unix.MS_REC
	return bindMount(src, dst, o)
}

func bindMount(src, dst string, o mountOptions) error {
	if err := unix.Mount(src, dst, "", o.flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
		return err
	}
	if !needsRemount(o.flags) {
		return nil
	}
	return remountBind(dst, o.flags)
}

// remountBind applies flags to an existing bind mount. Flags already on the
// mount (nosuid, nodev, ...) are kept: a bind remount replaces them all.
func remountBind(dst string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dst, err)
	}
	flags |= statfsMountFlags(st.Flags) | unix.MS_BIND | unix.MS_REMOUNT
	return unix.Mount("", dst, "", flags&^unix.MS_REC, "")
}

// statfsMountFlags maps statfs(2) ST_* flags to the MS_* flags that a bind
// remount must repeat.
func statfsMountFlags(st int64) uintptr {
	pairs := []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_RDONLY, unix.MS_RDONLY},
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	}
	var ms uintptr
	for _, p := range pairs {
		if st&p.st != 0 {
			ms |= p.ms
		}
	}
	return ms
}

// createMountpoint makes dst exist: a file when a bind mount's source is not
// a directory, otherwise a directory.
func createMountpoint(dst, src string, bind bool) error {
	dir := true
	if bind {
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		dir = fi.IsDir()
	}
	if dir {
		return os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// secureJoin resolves unsafe inside root as if root were /: symlinks
// (absolute or relative) and ".." never lead out of root. Missing components
// are joined as they are.
func secureJoin(root, unsafe string) (string, error) {
	const maxLinks = 255
	var resolved string // relative to root, always clean, never escaping
	rest := unsafe
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir("/" + resolved)[1:]
			continue
		}
		next := filepath.Join(resolved, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			// Missing (created later) or not a link: take it as is.
			resolved = next
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafe, root, unix.ELOOP)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafe, root, err)
		}
		if filepath.IsAbs(target) {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, resolved), nil
}

// setupDevNeeded follows runc: devices are created unless /dev is a bind
// mount (then it is someone else's /dev).
func setupDevNeeded(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && isBind(m, parseMountOptions(m.Options)) {
			return false
		}
	}
	return true
}

// defaultDevices are the nodes runc creates in every container.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// createDevices makes runc's default device nodes and the spec's. The guest
// agent holds every capability, so mknod works where runc would bind-mount,
// except in a user namespace, where mknod of a device is never allowed.
func createDevices(rootfs string, spec *specs.Spec, userns bool) error {
	devs := append([]specs.LinuxDevice(nil), defaultDevices...)
	if spec.Linux != nil {
		devs = append(devs, spec.Linux.Devices...)
	}
	// Without a tmpfs on /dev the nodes would land in the rootfs, which is
	// the host's directory shared into the guest: never create device nodes
	// there, bind the guest's own nodes over empty files instead (as runc
	// does in a user namespace).
	create := createDevice
	if !devIsTmpfs(spec) || userns {
		create = bindDevice
	}
	for _, d := range devs {
		if err := create(rootfs, d); err != nil {
			return fmt.Errorf("create device %s: %w", d.Path, err)
		}
	}
	return nil
}

func devIsTmpfs(spec *specs.Spec) bool {
	isTmpfs := false
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/dev" {
			isTmpfs = m.Type == "tmpfs"
		}
	}
	return isTmpfs
}

// bindDevice binds the agent's node for d (the child's mount namespace is
// still a copy of the agent's, so /dev/... is the guest's devtmpfs) over an
// empty file in the rootfs.
func bindDevice(rootfs string, d specs.LinuxDevice) error {
	dst, err := secureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	src := filepath.Join("/dev", strings.TrimPrefix(filepath.Clean(d.Path), "/dev/"))
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice) error {
	dst, err := secureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	var kind uint32
	switch d.Type {
	case "c", "u":
		kind = unix.S_IFCHR
	case "b":
		kind = unix.S_IFBLK
	case "p":
		kind = unix.S_IFIFO
	default:
		return fmt.Errorf("unknown device type %q", d.Type)
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode & 0o7777)
	}
	dev := int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
	// A spec entry may repeat a default device; the later one wins.
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := unix.Mknod(dst, kind|mode, dev); err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return unix.Lchown(dst, uid, gid)
}

// devSymlinks are runc's /dev links; /dev/ptmx goes to the container's own
// devpts instance.
func devSymlinks(rootfs string) error {
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	}
	for _, l := range links {
		// Resolve the directory only: the link itself may already exist
		// (a rootfs without a /dev mount keeps it from an earlier run) and
		// must not be followed.
		dir, err := secureJoin(rootfs, filepath.Dir(l[1]))
		if err != nil {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
		dst := filepath.Join(dir, filepath.Base(l[1]))
		if l[1] == "/dev/ptmx" {
			if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("symlink %s: %w", l[1], err)
			}
		}
		if err := os.Symlink(l[0], dst); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	return nil
}

// pivotRoot makes rootfs the root with runc's trick: pivot_root(".", ".")
// stacks the old root under the new one at "/", so no directory for it is
// needed in the image; the old root is then detached.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	// Unmounting must not propagate to the agent's mounts.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root a slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

// finishRootfs does what runc does after the pivot: shared root propagation,
// sysctls (before /proc/sys may become read-only), read-only and masked paths.
func finishRootfs(spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	l := spec.Linux
	if p := propagationFlags[l.RootfsPropagation]; p&unix.MS_SHARED != 0 {
		if err := unix.Mount("", "/", "", p, ""); err != nil {
			return fmt.Errorf("set rootfs propagation %s: %w", l.RootfsPropagation, err)
		}
	}
	if err := writeSysctls(l.Sysctl); err != nil {
		return err
	}
	for _, p := range l.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return err
		}
	}
	for _, p := range l.MaskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	return nil
}

// writeSysctls sets the spec's sysctls through /proc/sys. Inside the guest
// every sysctl is allowed; non-namespaced ones affect the whole pod VM.
func writeSysctls(sysctls map[string]string) error {
	for k, v := range sysctls {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("set sysctl %s: %w", k, err)
		}
	}
	return nil
}

func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("readonly path %s: %w", p, err)
	}
	if err := remountBind(p, unix.MS_RDONLY); err != nil {
		return fmt.Errorf("readonly path %s: %w", p, err)
	}
	return nil
}

// maskKind says how a masked path is hidden.
type maskKind int

const (
	maskSkip    maskKind = iota // missing: nothing to hide
	maskDevNull                 // a file: /dev/null is bound over it
	maskTmpfs                   // a directory: an empty read-only tmpfs covers it
)

// maskAction decides how to mask a path from its stat result.
func maskAction(fi os.FileInfo, statErr error) (maskKind, error) {
	if statErr != nil {
		if errors.Is(statErr, os.ErrNotExist) {
			return maskSkip, nil
		}
		return maskSkip, statErr
	}
	if fi.IsDir() {
		return maskTmpfs, nil
	}
	return maskDevNull, nil
}

func maskPath(p string) error {
	fi, err := os.Stat(p)
	kind, err := maskAction(fi, err)
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	switch kind {
	case maskDevNull:
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	case maskTmpfs:
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

// readonlyRoot remounts / read-only when the spec asks, last, after every
// mountpoint inside it has been created.
func readonlyRoot(spec *specs.Spec) error {
	if spec.Root == nil || !spec.Root.Readonly {
		return nil
	}
	if err := remountBind("/", unix.MS_RDONLY); err != nil {
		return fmt.Errorf("remount / read-only: %w", err)
	}
	return nil
}

// refreshSharedAttrs makes the guest fetch anew the attributes of what the
// container mounts from the share. A client may rewrite a mounted file
// between create and start (docker ≥ 28 appends the container's address to
// /etc/hosts after it joined the network), and until virtiofs' attribute
// timeout runs out the guest kernel keeps the size it saw at create: the
// workload would read the new content cut to the old length. statx with
// AT_STATX_FORCE_SYNC asks virtiofsd for the attributes now.
func refreshSharedAttrs(spec *specs.Spec) {
	for _, m := range spec.Mounts {
		if !strings.HasPrefix(m.Source, agent.GuestShareDir+"/") {
			continue
		}
		var st unix.Statx_t
		// Best effort: a source that is gone fails the workload's own use.
		unix.Statx(unix.AT_FDCWD, m.Source, unix.AT_STATX_FORCE_SYNC|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st)
	}
}
