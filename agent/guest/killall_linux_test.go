package guest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The walk covers the cgroup and every descendant, lists a pid once, and
// skips a child without cgroup.procs of its own to read (a threaded one, or
// one removed meanwhile).
func TestCgroupProcsWalk(t *testing.T) {
	dir := t.TempDir()
	for path, procs := range map[string]string{
		"":              "10\n11\n",
		"sub":           "12\n11\n",
		"sub/deeper":    "13\n",
		"other":         "",
		"other/deepest": "14\n",
	} {
		os.MkdirAll(filepath.Join(dir, path), 0o755)
		if err := os.WriteFile(filepath.Join(dir, path, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "threaded"), 0o755)
	got, err := cgroupProcs(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []int{10, 11, 12, 13, 14}; !reflect.DeepEqual(got, want) {
		t.Errorf("cgroupProcs = %v, want %v", got, want)
	}
	// The cgroup itself must be readable: a container without it has no
	// processes to report, which is an error, not an empty list.
	if _, err := cgroupProcs(filepath.Join(dir, "threaded")); err == nil {
		t.Error("cgroupProcs of a cgroup without cgroup.procs succeeded")
	}
	if got := initFirst([]int{3, 4, 5}, 5); !reflect.DeepEqual(got, []int{5, 3, 4}) {
		t.Errorf("initFirst = %v", got)
	}
}

// sharedPidNS starts a shell as PID 1 of a new pid namespace, standing in
// for a pod's pause process, with a sleep for each of args as its children:
// the processes of the pod's containers, which share its pid namespace. It
// returns the shell's pid and each sleep's by its argument.
func sharedPidNS(t *testing.T, args ...string) (int, map[string]int) {
	t.Helper()
	script := ""
	for _, a := range args {
		script += "sleep " + a + " & "
	}
	cmd := exec.Command("/bin/sh", "-c", script+"wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its pid namespace ends with it, the sleeps too.
		cmd.Process.Kill()
		cmd.Wait()
	})
	sh := cmd.Process.Pid
	pids := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) < len(args) {
		if time.Now().After(deadline) {
			t.Fatalf("children of the namespace's shell: found %v of %v", pids, args)
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sh, sh))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if a := strings.Split(string(cl), "\x00"); len(a) >= 2 && a[0] == "sleep" {
				pids[a[1]] = pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sh, pids
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// waitDead waits until pid no longer runs.
func waitDead(pid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// testCgroups makes cgroups under the container parent (relative paths,
// parents first) and removes them when the test ends.
func testCgroups(t *testing.T, paths ...string) {
	t.Helper()
	parent := filepath.Join(cgroupRoot, cgroupParent)
	if _, err := os.Stat(parent); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(parent) })
	}
	for _, p := range paths {
		dir := filepath.Join(parent, p)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Whatever the test left in it moves back to the root first.
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			for _, pid := range strings.Fields(string(b)) {
				os.WriteFile(filepath.Join(cgroupRoot, "cgroup.procs"), []byte(pid), 0)
			}
			writeExisting(filepath.Join(dir, "cgroup.freeze"), "0")
			deadline := time.Now().Add(5 * time.Second)
			for os.Remove(dir) != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func moveTo(t *testing.T, cgroup string, pid int) {
	t.Helper()
	if err := writeExisting(filepath.Join(cgroupRoot, cgroupParent, cgroup, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
}

// runningContainer registers container id with a running init pid.
func runningContainer(s *Server, id string, pid int) *process {
	p := &process{started: true, execed: true, pid: pid, exited: make(chan struct{}), spawned: make(chan struct{}), attached: map[string]bool{}}
	close(p.spawned)
	s.containers[id] = &container{id: id, spec: &specs.Spec{}, procs: map[string]*process{"": p}}
	return p
}

// TestKillAllSharedPidNS: in a pod whose containers share the sandbox's pid
// namespace, kill --all of one container reaches its own processes (in its
// cgroup and below) and neither the sandbox's nor a sibling's; ps lists its
// own alone, its init first.
func TestKillAllSharedPidNS(t *testing.T) {
	useUnifiedCgroup(t)
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGTERM} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			testCgroups(t, "ka-pod", "ka-a", "ka-a/sub", "ka-b")
			sh, pids := sharedPidNS(t, "1001", "1002", "1003")
			a, aChild, b := pids["1001"], pids["1002"], pids["1003"]
			moveTo(t, "ka-pod", sh)
			moveTo(t, "ka-a", a)
			moveTo(t, "ka-a/sub", aChild)
			moveTo(t, "ka-b", b)

			s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
			runningContainer(s, "ka-pod", sh)
			pa := runningContainer(s, "ka-a", a)
			runningContainer(s, "ka-b", b)

			got, err := s.ps("ka-a")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0] != a || got[1] != aChild {
				t.Errorf("ps of a = %v, want [%d %d] (pod %d, b %d)", got, a, aChild, sh, b)
			}

			if err := s.kill("ka-a", pa, sig, true); err != nil {
				t.Fatal(err)
			}
			for _, pid := range []int{a, aChild} {
				if !waitDead(pid) {
					t.Errorf("process %d of a survived kill --all %v", pid, sig)
				}
			}
			for name, pid := range map[string]int{"the sandbox": sh, "b": b} {
				if !alive(pid) {
					t.Errorf("kill --all %v of a killed %s (pid %d)", sig, name, pid)
				}
			}
			if frozen, _ := cgroupFrozen(cgroupDir("ka-a")); frozen {
				t.Error("a's cgroup is left frozen")
			}
		})
	}
}

// TestKillAllAfterInitExited: what a container's init left in its cgroup
// outlives the init; kill --all then still reaches it and succeeds, as
// runc's does, and ps lists it.
func TestKillAllAfterInitExited(t *testing.T) {
	useUnifiedCgroup(t)
	testCgroups(t, "ka-left")
	left := exec.Command("sleep", "1004")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { left.Process.Kill(); left.Wait() })
	moveTo(t, "ka-left", left.Process.Pid)

	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	// The init's pid is long gone (and may be reused): never signalled.
	p := runningContainer(s, "ka-left", 1<<22)
	close(p.exited)

	if got, err := s.ps("ka-left"); err != nil || !reflect.DeepEqual(got, []int{left.Process.Pid}) {
		t.Errorf("ps after the init exited = %v, %v; want the leftover %d", got, err, left.Process.Pid)
	}
	if err := s.kill("ka-left", p, unix.SIGKILL, true); err != nil {
		t.Fatalf("kill --all after the init exited: %v", err)
	}
	if !waitDead(left.Process.Pid) {
		t.Error("the leftover survived kill --all")
	}
	// Without --all the init alone is meant, and it is gone.
	if err := s.kill("ka-left", p, unix.SIGKILL, false); !isStateErr(err, "process is not running") {
		t.Errorf("kill of the exited init = %v, want \"process is not running\"", err)
	}
}

// TestKillAllWithoutCgroup: a guest without cgroup v2 falls back to the
// init's pid namespace, and once the init has exited finds nothing (its pid
// may name another process by then).
func TestKillAllWithoutCgroup(t *testing.T) {
	requiresRoot(t)
	old := cgroupRoot
	cgroupRoot = t.TempDir() // no cgroup2 mount
	t.Cleanup(func() { cgroupRoot = old })
	sh, pids := sharedPidNS(t, "1005", "1006")

	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	p := runningContainer(s, "ka-none", pids["1005"])
	close(p.exited)
	if err := s.kill("ka-none", p, unix.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(sh) || !alive(pids["1006"]) {
		t.Fatal("kill --all of an exited init without a cgroup signalled its old pid namespace")
	}
	p = runningContainer(s, "ka-none", pids["1005"])
	if got, _ := s.ps("ka-none"); len(got) != 3 || got[0] != pids["1005"] {
		t.Errorf("ps without a cgroup = %v, want the 3 processes of the namespace, init first", got)
	}
	if err := s.kill("ka-none", p, unix.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{sh, pids["1005"], pids["1006"]} {
		if !waitDead(pid) {
			t.Errorf("process %d of the namespace survived", pid)
		}
	}
}

// TestKillAllPaused: a signal other than SIGKILL to a paused container's
// processes leaves it paused, where a freeze of its own would thaw it
// afterwards; a handler runs once the container is resumed.
func TestKillAllPaused(t *testing.T) {
	useUnifiedCgroup(t)
	testCgroups(t, "ka-paused")
	marker := filepath.Join(t.TempDir(), "got-term")
	cmd := exec.Command("/bin/sh", "-c", `trap "echo > $0; exit 0" TERM; while :; do sleep 0.05; done`, marker)
	// Its own pid namespace, so that a kill --all gone wrong reaches no
	// process of the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	moveTo(t, "ka-paused", cmd.Process.Pid)
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	p := runningContainer(s, "ka-paused", cmd.Process.Pid)
	if err := s.pause("ka-paused"); err != nil {
		t.Fatal(err)
	}
	if err := s.kill("ka-paused", p, unix.SIGTERM, true); err != nil {
		t.Fatal(err)
	}
	if !s.paused("ka-paused") {
		t.Fatal("kill --all TERM thawed a paused container")
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("a frozen process ran its handler")
	}
	if err := s.resume("ka-paused"); err != nil {
		t.Fatal(err)
	}
	if !waitDead(cmd.Process.Pid) {
		t.Error("the signal was lost: the process runs on after its resume")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the handler did not run after the resume: %v", err)
	}
}
