// Package nsexec runs code on an OS thread in another Linux namespace.
//
// Namespaces (setns, unshare) belong to a thread, and Go moves goroutines
// between threads: code that must run in a namespace runs on a goroutine
// locked to its thread, and a thread left in a namespace that is not the
// process's own must never run other goroutines again. A thread whose
// locked goroutine ends without unlocking is ended by the runtime, which is
// how both helpers here get rid of such a thread.
package nsexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNoNamespace: the path names no namespace of the type asked for (any
// more): it is missing, or is no namespace file (an unmounted bind mount
// leaves an empty one), or one of another type.
var ErrNoNamespace = errors.New("no such namespace")

// Do runs f on an OS thread that has joined the namespace at nsPath, of
// type nstype (unix.CLONE_NEWNET, NEWUTS, NEWIPC or NEWCGROUP: those a
// thread can leave again), and goes back to the thread's own
// namespace afterwards. Sockets, netlink handles and /dev/net/tun opened by
// f belong to the namespace at nsPath for good, whichever thread uses them
// later. When the namespace is the thread's own already, f runs as it is.
//
// The thread goes back to Go's pool only once it is back in its own
// namespace; if going back fails (or the thread's own namespace cannot be
// opened first) it stays locked and ends with the goroutine. f must not
// hand work to other goroutines: they would run in the caller's namespace.
// Do's own errors wrap ErrNoNamespace where the namespace is not there;
// f's error is returned as it is.
func Do(nsPath string, nstype int, f func() error) error {
	ns, ok := joinable[nstype]
	if !ok {
		return fmt.Errorf("run in namespace %s: type %#x cannot be joined and left by one thread", nsPath, nstype)
	}
	kind := ns.kind
	target, err := os.Open(nsPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open %s: %w: %w", kind, ErrNoNamespace, err)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", kind, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/" + ns.file)
		if err != nil {
			done <- fmt.Errorf("open own %s: %w", kind, err)
			return
		}
		defer orig.Close()
		if sameFile(target, orig) {
			runtime.UnlockOSThread()
			done <- f()
			return
		}
		if err := unix.Setns(int(target.Fd()), nstype); err != nil {
			if errors.Is(err, unix.EINVAL) {
				err = fmt.Errorf("%w: %w", ErrNoNamespace, err)
			}
			done <- fmt.Errorf("join %s %s: %w", kind, nsPath, err)
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), nstype) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// Throwaway runs f on a new locked OS thread that Go ends afterwards, and
// returns its error: for f that moves the thread into other namespaces for
// good (unshare, setns) or changes what it shares (unshare CLONE_FS), and
// for children forked from such a thread, which inherit its namespaces.
func Throwaway(f func() error) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		done <- f()
	}()
	return <-done
}

// joinable are the namespaces a thread of a multithreaded process can join
// and leave again, by the names of their files in /proc/PID/ns and in
// errors. A mount namespace cannot be joined by a thread that shares its
// filesystem attributes (Go's all do), a user namespace by a multithreaded
// process at all, and a pid namespace only applies to children.
var joinable = map[int]struct{ file, kind string }{
	unix.CLONE_NEWNET:    {"net", "network namespace"},
	unix.CLONE_NEWUTS:    {"uts", "uts namespace"},
	unix.CLONE_NEWIPC:    {"ipc", "ipc namespace"},
	unix.CLONE_NEWCGROUP: {"cgroup", "cgroup namespace"},
}

func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(int(a.Fd()), &sa) == nil && unix.Fstat(int(b.Fd()), &sb) == nil &&
		sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
