package runtime

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as the hog when started with OOMHogCommand.
func init() {
	if len(os.Args) == 2 && os.Args[1] == OOMHogCommand {
		if err := OOMHog(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(3)
	}
}

// oomKills reads the OOM kill count of a memory cgroup (v1's
// memory.oom_control, v2's memory.events).
func oomKills(t *testing.T, dir string, v2 bool) int {
	t.Helper()
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("%s has no oom_kill line: %q", file, b)
	return 0
}

// ReflectOOM's core: in a memory cgroup of its own, with a process using
// memory in it, the kernel counts one OOM kill, the victim is the hog, and
// the limit is back as it was.
func TestReflectOOMIn(t *testing.T) {
	requiresRoot(t)
	v2 := false
	hier := filepath.Join(cgroupRoot, "memory")
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		v2, hier = true, cgroupRoot
	}
	if _, err := os.Stat(hier); err != nil {
		t.Skipf("skipping: no memory cgroup hierarchy at %s", hier)
	}
	dir := filepath.Join(hier, fmt.Sprintf("runvirt-oomtest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
	}
	before, _ := os.ReadFile(filepath.Join(dir, limitFile))
	oomHogArgv = []string{os.Args[0], OOMHogCommand}
	place := func(pid int) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	if err := reflectOOMIn(dir, v2, place, slog.Default()); err != nil {
		t.Fatalf("reflectOOMIn: %v", err)
	}
	if n := oomKills(t, dir, v2); n != 1 {
		t.Errorf("oom kills counted in the cgroup: %d, want 1", n)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, limitFile)); string(after) != string(before) {
		t.Errorf("%s after: %q, want it back at %q", limitFile, after, before)
	}
}
