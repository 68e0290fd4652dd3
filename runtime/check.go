package runtime

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/runvirt/runvirt/config"
	"github.com/runvirt/runvirt/hypervisor"
	"golang.org/x/sys/unix"
)

// CheckItem is one line of `runvirt check`.
type CheckItem struct {
	Name  string
	OK    bool
	Fatal bool // runvirt cannot start a VM without it
	Info  string
}

// CheckReport is what the host offers and what runvirt will use.
type CheckReport struct {
	Items  []CheckItem
	Use    string // the resolved configuration, or why there is none
	CanRun bool
}

// Check inspects the host for cfg.
func Check(cfg *config.Config) CheckReport {
	var r CheckReport
	add := func(name string, ok, fatal bool, info string) {
		r.Items = append(r.Items, CheckItem{Name: name, OK: ok, Fatal: fatal && !ok, Info: info})
	}
	src := "built-in defaults"
	if cfg.Source != "" {
		src = cfg.Source
	}
	add("config", true, false, src)

	h := DetectHost()
	add("kvm", h.KVM.Usable, cfg.Accel == "kvm", h.KVM.Reason)
	add("vhost-vsock", h.Vsock.Usable, cfg.Transport == "vsock", h.Vsock.Reason)

	if qemu, err := exec.LookPath(cfg.QEMU); err != nil {
		add("qemu", false, true, fmt.Sprintf("%s: %v (try: apt-get install qemu-system-x86)", cfg.QEMU, err))
	} else {
		add("qemu", true, true, qemu+" ("+qemuVersion(qemu)+")")
		// QEMU parses -sandbox before it acts on -version: a QEMU built
		// without seccomp refuses the option here, as it would at boot.
		out, err := exec.Command(qemu, "-sandbox", hypervisor.SandboxOption, "-version").CombinedOutput()
		if err != nil {
			add("qemu-seccomp", false, true, fmt.Sprintf("-sandbox %s: %s (QEMU was built without seccomp; use Debian's qemu-system-x86)", hypervisor.SandboxOption, strings.TrimSpace(string(out))))
		} else {
			add("qemu-seccomp", true, true, "-sandbox "+hypervisor.SandboxOption)
		}
	}
	if err := checkMountAPI(); err != nil {
		add("mount-api", false, true, fmt.Sprintf("%v (the share's binds need open_tree and mount_setattr: Linux 5.12 or later)", err))
	} else {
		add("mount-api", true, true, "open_tree, mount_setattr, move_mount")
	}
	if err := checkOpenat2(); err != nil {
		add("openat2", false, true, fmt.Sprintf("%v (the share is walked without following symlinks, with openat2's RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS: Linux 5.6 or later)", err))
	} else {
		add("openat2", true, true, "RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS")
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		add("tun", false, false, fmt.Sprintf("%v: containers get no network (try: modprobe tun)", err))
	} else {
		f.Close()
		add("tun", true, false, "/dev/net/tun (taps for the containers' networks)")
	}
	if cfg.DebugShell {
		found := ""
		for _, p := range debugBusyboxPaths {
			if _, err := os.Stat(p); err == nil {
				found = p
				break
			}
		}
		add("debug-shell", found != "", true, map[bool]string{true: found, false: "debug_shell = true needs a static busybox (try: apt-get install busybox-static)"}[found != ""])
	}
	if _, err := os.Stat(cfg.Virtiofsd); err != nil {
		add("virtiofsd", false, cfg.SharedFS == "virtio-fs", fmt.Sprintf("%v (try: apt-get install qemu-system-x86, or shared_fs = \"9p\")", err))
	} else {
		add("virtiofsd", true, false, cfg.Virtiofsd)
	}

	kernelRel, kerr := KernelRelease(cfg.Kernel)
	if kerr != nil {
		add("kernel", false, true, fmt.Sprintf("%s: %v (try: make install)", cfg.Kernel, kerr))
	} else {
		add("kernel", true, true, fmt.Sprintf("%s (%s)", cfg.Kernel, kernelRel))
	}
	if _, err := os.Stat(cfg.Initrd); err != nil {
		add("initrd", false, true, fmt.Sprintf("%v (try: make install)", err))
	} else {
		initrdRel := InitrdRelease(cfg.Initrd)
		switch {
		case initrdRel == "":
			add("initrd", true, false, cfg.Initrd+" (kernel release unknown: no kernel.release beside it)")
		case kerr == nil && initrdRel != kernelRel:
			add("initrd", false, true, fmt.Sprintf("%s was built for kernel %s but the kernel is %s (try: make install)", cfg.Initrd, initrdRel, kernelRel))
		default:
			add("initrd", true, true, fmt.Sprintf("%s (built for kernel %s)", cfg.Initrd, initrdRel))
		}
	}

	sc, warns, err := Resolve(cfg, h)
	if err == nil {
		it := checkQEMUUser(cfg, sc)
		add(it.Name, it.OK, it.Fatal, it.Info)
	}

	r.CanRun = true
	for _, it := range r.Items {
		if it.Fatal {
			r.CanRun = false
		}
	}
	if err != nil {
		r.Use = "nothing: " + err.Error()
		r.CanRun = false
	} else {
		r.Use = fmt.Sprintf("accel=%s machine=%s vcpus=%d memory=%dMiB transport=%s shared_fs=%s",
			sc.Accel, sc.Machine, sc.VCPUs, sc.MemoryMiB, sc.Transport, sc.SharedFS)
		for _, w := range warns {
			r.Use += "\n  warning: " + w
		}
	}
	return r
}

// checkQEMUUser starts QEMU as the user it will run as (leasing an id for
// it as a sandbox would) and says who it ran as. QEMU as root is not fatal:
// it is what qemu_user = "root" asks for, and what 9p needs.
func checkQEMUUser(cfg *config.Config, sc SandboxConfig) CheckItem {
	it := CheckItem{Name: "qemu-user"}
	if sc.QEMUUser == "" {
		it.Info = "QEMU runs as root (qemu_user = \"root\")"
		if cfg.SharedFS == "9p" && cfg.QEMUUser != "root" {
			it.Info = "QEMU runs as root: shared_fs = \"9p\" needs it (its 9p server opens the share's files as their owners); virtio-fs lets QEMU run unprivileged"
		}
		return it
	}
	u, lease, err := qemuUserOf(sc, UIDLeaseDir)
	if err != nil {
		it.Fatal, it.Info = true, err.Error()
		return it
	}
	defer lease.release()
	uid, err := hypervisor.ProbeUser(sc.QEMU, u, 10*time.Second)
	if err != nil {
		it.Fatal, it.Info = true, fmt.Sprintf("%v (try: qemu_user = \"root\")", err)
		return it
	}
	if uid != int(u.UID) {
		it.Fatal, it.Info = true, fmt.Sprintf("QEMU started as %s ran as uid %d", u, uid)
		return it
	}
	it.OK = true
	it.Info = fmt.Sprintf("QEMU ran as uid %d under -sandbox and answered QMP", uid)
	if sc.QEMUUser == "sandbox" {
		it.Info += fmt.Sprintf(" (qemu_user = \"sandbox\": one uid per sandbox from %d-%d)", sc.QEMUUIDs[0], sc.QEMUUIDs[1])
	}
	return it
}

func qemuVersion(qemu string) string {
	out, err := exec.Command(qemu, "--version").Output()
	if err != nil {
		return "version unknown: " + err.Error()
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// KernelRelease reads the release string of a kernel image: from a
// bzImage's setup header (the kernel_version field, as `file` does), or from
// the linux_banner of an uncompressed ELF vmlinux (booted through PVH).
func KernelRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", fmt.Errorf("read boot header: %w", err)
	}
	if string(hdr[:4]) == "\x7fELF" {
		return elfKernelRelease(f)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("neither a bzImage (no HdrS boot header) nor an ELF vmlinux")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, off)
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	rel, _, _ := strings.Cut(string(buf), " ")
	if rel == "" {
		return "", fmt.Errorf("no kernel version in boot header")
	}
	return rel, nil
}

// InitrdRelease returns the kernel release the guest image was built for,
// recorded by guest-image/build.sh in kernel.release beside the initrd.
func InitrdRelease(initrd string) string {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(initrd), "kernel.release"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// elfKernelRelease finds "Linux version REL " in an uncompressed kernel.
func elfKernelRelease(f *os.File) (string, error) {
	const banner = "Linux version "
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var window []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		window = append(window, buf[:n]...)
		if i := bytes.Index(window, []byte(banner)); i >= 0 && len(window)-i > len(banner)+64 {
			rel, _, _ := strings.Cut(string(window[i+len(banner):i+len(banner)+64]), " ")
			return rel, nil
		}
		if len(window) > 256 {
			window = window[len(window)-256:]
		}
		if err == io.EOF {
			return "", fmt.Errorf("no Linux version banner in the ELF kernel")
		}
		if err != nil {
			return "", err
		}
	}
}

// checkMountAPI tries what bindMount does on a throwaway clone of /.
func checkMountAPI() error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	return nil
}

// checkOpenat2 tries what the share's walks do (safepath.go): a path below
// an open directory, resolved with openat2 without following symlinks.
func checkOpenat2() error {
	root, err := os.Open("/")
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := openBeneath(root, "proc")
	if err != nil {
		return err
	}
	f.Close()
	return nil
}
