package nsexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/sys/unix"
)

// testNetNS makes a named network namespace, removed in Cleanup, and
// returns its path.
func testNetNS(t *testing.T) string {
	t.Helper()
	testutil.RequiresRoot(t, "make network namespaces")
	testutil.RequiresCommands(t, "iproute2", "ip")
	name := fmt.Sprintf("rvnsexec%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// nsID is the identity of the namespace file at path.
func nsID(t *testing.T, path string) [2]uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{st.Dev, st.Ino}
}

// f runs in the namespace, and its thread is back in its own one
// afterwards, alive: back in Go's pool, not ended.
func TestDoJoinsAndGoesBack(t *testing.T) {
	ns := testNetNS(t)
	runtime.LockOSThread()
	own := nsID(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	var tid int
	var inside [2]uint64
	// Not on the main thread, which Go would park rather than end (as
	// TestThrowawayEndsThread).
	for tid == 0 || tid == os.Getpid() {
		err := Do(ns, unix.CLONE_NEWNET, func() error {
			tid = unix.Gettid()
			inside = nsID(t, "/proc/thread-self/ns/net")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if inside != nsID(t, ns) {
		t.Errorf("f ran in namespace %v, want %s's %v", inside, ns, nsID(t, ns))
	}
	// A thread left locked ends once its goroutine has: give it the time.
	time.Sleep(200 * time.Millisecond)
	task := fmt.Sprintf("/proc/self/task/%d/ns/net", tid)
	if _, err := os.Stat(task); err != nil {
		t.Fatalf("f's thread ended, though it went back to its namespace: %v", err)
	}
	if got := nsID(t, task); got != own {
		t.Errorf("f's thread is in namespace %v afterwards, want its own %v", got, own)
	}
}

// f's error comes back as it is, from another namespace or the thread's
// own.
func TestDoReturnsFError(t *testing.T) {
	sentinel := errors.New("from f")
	paths := []string{"/proc/self/ns/net"}
	if os.Geteuid() == 0 {
		paths = append(paths, testNetNS(t))
	}
	for _, p := range paths {
		err := Do(p, unix.CLONE_NEWNET, func() error { return sentinel })
		if err != sentinel {
			t.Errorf("%s: %v, want f's error as it is", p, err)
		}
	}
}

// A path that is no namespace (missing, or an empty file as an unmounted
// bind mount leaves) is ErrNoNamespace, and f does not run.
func TestDoNoNamespace(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "missing"), empty} {
		ran := false
		err := Do(p, unix.CLONE_NEWNET, func() error { ran = true; return nil })
		if !errors.Is(err, ErrNoNamespace) || ran {
			t.Errorf("%s: %v (f ran: %v), want ErrNoNamespace", p, err, ran)
		}
	}
}

// Namespaces a thread of a Go program cannot join and leave are refused
// before anything is tried.
func TestDoRefusesUnjoinable(t *testing.T) {
	for _, typ := range []int{unix.CLONE_NEWNS, unix.CLONE_NEWUSER, unix.CLONE_NEWPID} {
		ran := false
		err := Do("/proc/self/ns/net", typ, func() error { ran = true; return nil })
		if err == nil || ran {
			t.Errorf("type %#x: %v (f ran: %v), want an error", typ, err, ran)
		}
	}
}

// Throwaway's thread is ended once f returned: whatever f changed of it
// never runs another goroutine.
func TestThrowawayEndsThread(t *testing.T) {
	sentinel := errors.New("from f")
	var tid int
	// The main thread cannot end: Go parks it for good instead, which
	// this test cannot tell from a thread back in the pool. Once parked,
	// it is not picked again.
	for tid == 0 || tid == os.Getpid() {
		err := Throwaway(func() error { tid = unix.Gettid(); return sentinel })
		if err != sentinel {
			t.Errorf("Throwaway: %v, want f's error", err)
		}
	}
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still runs after f returned", tid)
		}
	}
}
