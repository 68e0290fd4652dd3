package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/runvirt/runvirt/agent"
)

// Dir is the state directory of one container under --root. Every on-disk
// path the runtime uses is a method here, so the whole layout is in one file.
type Dir struct {
	Root string // the --root directory
	ID   string
}

func (d Dir) Path() string         { return filepath.Join(d.Root, d.ID) }
func (d Dir) join(n string) string { return filepath.Join(d.Root, d.ID, n) }

// State is the container's state file.
func (d Dir) State() string { return d.join("state.json") }

// Spec is the copy of the bundle's config.json taken at create: later
// changes to the bundle must not affect the container.
func (d Dir) Spec() string { return d.join("config.json") }

// Lock is the file whose flock serialises verbs on the container.
func (d Dir) Lock() string { return d.join("lock") }

// SocketBase holds one short directory per sandbox for its unix sockets.
// They cannot live in the state directory: clients choose --root, and with
// a 64-character id a path like /run/docker/runtime-runvirt/moby/<id>/ is
// already past the 108 bytes a socket path may have.
const SocketBase = "/run/runvirt-sockets"

// UIDLeaseDir holds the lock files by which monitors lease QEMU's uids
// (qemu_user = "sandbox"); see uidLease.
const UIDLeaseDir = "/run/runvirt-uids"

// SocketDir is the sandbox's socket directory, named by a hash of the root
// and the id so that every verb finds it without reading the state.
func (d Dir) SocketDir() string {
	root, err := filepath.Abs(d.Root)
	if err != nil {
		root = d.Root
	}
	sum := sha256.Sum256([]byte(root + "\x00" + d.ID))
	return filepath.Join(SocketBase, hex.EncodeToString(sum[:8]))
}

// AgentSocket is the monitor's socket: each connection becomes one stream to
// the guest agent.
func (d Dir) AgentSocket() string { return filepath.Join(d.SocketDir(), "agent.sock") }

// QMPSocket is QEMU's monitor socket.
func (d Dir) QMPSocket() string { return filepath.Join(d.SocketDir(), "qmp.sock") }

// FSSocket is virtiofsd's vhost-user socket.
func (d Dir) FSSocket() string { return filepath.Join(d.SocketDir(), "fs.sock") }

// ConsoleLog receives the guest's console (kernel and agent messages).
func (d Dir) ConsoleLog() string { return d.join("console.log") }

// HelperCgroup is the memory cgroup of the sandbox's monitor and
// virtiofsd, below the memory hierarchy's root (helpercgroup.go): named
// like SocketDir, so two roots' sandboxes of one id get one each.
func (d Dir) HelperCgroup() string {
	return filepath.Join(helperCgroupParent, filepath.Base(d.SocketDir()))
}

// MonitorLog receives the monitor's own log and its helpers' stderr.
func (d Dir) MonitorLog() string { return d.join("monitor.log") }

// MonitorPid holds the pid of the monitor process.
func (d Dir) MonitorPid() string { return d.join("monitor.pid") }

// QEMUPid holds the pid of QEMU.
func (d Dir) QEMUPid() string { return d.join("qemu.pid") }

// ShareSkeleton is the host's side of the share: the directories runvirt
// makes for each container and, bound onto them, its rootfs and volumes.
// It is never exported itself, so the guest cannot write it (plant a
// symlink for the host to follow, or fill the state directory's
// filesystem): the guest writes only through the binds, on their own
// storage.
func (d Dir) ShareSkeleton() string { return d.join("share-skeleton") }

// Share is the directory exported to the guest (9p or virtio-fs): a
// read-only bind of ShareSkeleton, in its peer group so that every bind
// made in the skeleton shows here too, with its own flags.
func (d Dir) Share() string { return d.join("shared") }

// ShareRootfs is where the container's rootfs is bound in the share,
// relative to it (the same in the skeleton, the export and, below
// agent.GuestShareDir, the guest).
func ShareRootfs(cid string) string { return filepath.Join(cid, "rootfs") }

// ShareMount is where the n-th bind mount of the spec is placed in the
// share, relative to it. The last element keeps the (resolved) source's own
// name, which tools that match mountinfo roots against sources (the OCI
// validation suite) expect.
func ShareMount(cid string, n int, source string) string {
	return filepath.Join(cid, "mounts", fmt.Sprint(n), filepath.Base(source))
}

// GuestRootfs is the guest path of ShareRootfs.
func GuestRootfs(cid string) string {
	return filepath.Join(agent.GuestShareDir, ShareRootfs(cid))
}

// GuestMount is the guest path of ShareMount.
func GuestMount(cid string, n int, source string) string {
	return filepath.Join(agent.GuestShareDir, ShareMount(cid, n, source))
}

// makeSocketDir creates the sandbox's socket directory, private to root.
func (d Dir) makeSocketDir() error {
	if err := os.MkdirAll(d.SocketDir(), 0o700); err != nil {
		return fmt.Errorf("make socket dir: %w", err)
	}
	return nil
}

// ResolveRoot returns root as the kernel names it: absolute, with every
// symlink in its existing part resolved. Clients hand runvirt roots through
// symlinks (docker's default exec root is /var/run/docker, and /var/run is
// a symlink to /run on most distributions), while the mount table names
// mounts by their resolved paths: a share under an unresolved root would not
// be found there, get bound over itself again, hide the container's binds
// and leave mounts that block its removal. A part that does not exist yet is
// kept as given; nothing is created.
func ResolveRoot(root string) (string, error) {
	if root == "" {
		return "", fmt.Errorf("root: empty path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", root, err)
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		resolved, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(resolved, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) || dir == "/" {
			return "", fmt.Errorf("root %s: %w", root, err)
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}
