// Command probe is a throwaway guest init for measuring and checking the
// guest boot (guest-image/README.md): it runs agent.Boot, reports on the
// connection what the guest looks like, and powers off. It is not the agent.
//
//	CGO_ENABLED=0 go build -o /tmp/probe ./guest-image/probe
//	guest-image/build.sh --agent /tmp/probe --out /tmp/guest
//	guest-image/probe/measure.py ...
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/agent/guest"
	"golang.org/x/sys/unix"
)

func main() {
	cfg, conn, err := guest.Boot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		guest.PowerOff()
	}
	report(conn, cfg)
	conn.Close()
	guest.PowerOff()
}

func report(w io.Writer, cfg guest.BootConfig) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(w, "HELLO kernel=%s transport=%s share=%s uptime=%s\n",
		unix.ByteSliceToString(uts.Release[:]), cfg.Transport, cfg.SharedFS, uptime())
	fmt.Fprintf(w, "HOSTNAME %s\n", unix.ByteSliceToString(uts.Nodename[:]))

	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(l)
			fmt.Fprintf(w, "MOUNT %s %s %s %s\n", f[0], f[1], f[2], f[3])
		}
	}
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			names = append(names, strings.Fields(l)[0])
		}
		fmt.Fprintf(w, "MODULES %d %s\n", len(names), strings.Join(names, " "))
	}
	for _, f := range []string{
		"/sys/class/misc/hw_random/rng_current",
		"/proc/sys/kernel/random/entropy_avail",
		"/sys/fs/cgroup/cgroup.subtree_control",
		"/sys/fs/cgroup/runvirt/cgroup.subtree_control",
		"/sys/class/net/lo/operstate",
		"/sys/class/net/lo/flags",
	} {
		b, err := os.ReadFile(f)
		fmt.Fprintf(w, "FILE %s %q %v\n", f, strings.TrimSpace(string(b)), err)
	}
	if cfg.SharedFS != "" {
		p := filepath.Join(agent.GuestShareDir, "probe-"+cfg.SharedFS+".txt")
		err := os.WriteFile(p, []byte("written by the guest over "+cfg.SharedFS+"\n"), 0o644)
		fmt.Fprintf(w, "SHARE write %s: %v\n", p, err)
		fmt.Fprintf(w, "SHARE mmap-shared: %v\n", mmapShared(p))
	}
	fmt.Fprintf(w, "PIVOT_ROOT %v\n", pivotRootCheck())
	if cfg.Debug {
		dumpKmsg(w)
	}
	fmt.Fprintf(w, "BYE uptime=%s\n", uptime())
}

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}

// mmapShared checks that a MAP_SHARED writable mapping of a shared file
// works (9p needs cache=mmap for it).
func mmapShared(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	copy(b, "WRITTEN!")
	if err := unix.Msync(b, unix.MS_SYNC); err != nil {
		return fmt.Errorf("msync: %w", err)
	}
	return unix.Munmap(b)
}

// pivotRootCheck does what the container code does: in a new mount
// namespace, pivot_root into a fresh tmpfs. It runs on a locked thread that
// is thrown away afterwards (the goroutine exits without unlocking).
func pivotRootCheck() string {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make / private: %w", err)
			}
			dir := "/tmp/pivot-check"
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
				return fmt.Errorf("mount tmpfs: %w", err)
			}
			if err := os.Mkdir(dir+"/old", 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dir+"/marker", []byte("new root"), 0o644); err != nil {
				return err
			}
			if err := unix.PivotRoot(dir, dir+"/old"); err != nil {
				return fmt.Errorf("pivot_root: %w", err)
			}
			if err := unix.Chdir("/"); err != nil {
				return err
			}
			if err := unix.Unmount("/old", unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount old root: %w", err)
			}
			if b, err := os.ReadFile("/marker"); err != nil || string(b) != "new root" {
				return fmt.Errorf("after pivot_root: marker %q: %v", b, err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		return "failed: " + err.Error()
	}
	return "ok"
}

// dumpKmsg copies the kernel log to w as KMSG lines (with runvirt.debug=1;
// boot with initcall_debug log_buf_len=4M to see where boot time goes
// without slowing the boot by printing it all on the serial console).
func dumpKmsg(w io.Writer) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		fmt.Fprintf(w, "KMSG open: %v\n", err)
		return
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE {
			continue // records overwritten before we read them
		}
		if err != nil || n <= 0 {
			return
		}
		// "prio,seq,usecs,flags;message"
		rec := string(buf[:n])
		hdr, msg, _ := strings.Cut(rec, ";")
		f := strings.Split(hdr, ",")
		if len(f) >= 3 {
			fmt.Fprintf(w, "KMSG %s %s", f[2], msg)
		}
	}
}
