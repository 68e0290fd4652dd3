package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The helper cgroup gets its limit; a helper started in it is born there
// while the starting process ends up back where it was; helperPids lists
// the helper; removal waits for it to be gone.
func TestHelperCgroup(t *testing.T) {
	requiresRoot(t)
	hier, v2 := memoryHierarchy()
	if hier == "" {
		t.Skip("skipping: the host has no memory cgroup controller")
	}
	d := Dir{Root: t.TempDir(), ID: "helpers"}
	home, err := ownMemoryCgroup(hier, v2)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := newHelperCgroup(d, 96)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(hc.dir) })
	if hc.dir != helperCgroupDir(d) || !strings.HasPrefix(hc.dir, filepath.Join(hier, helperCgroupParent)+"/") {
		t.Fatalf("helper cgroup %s, want %s", hc.dir, helperCgroupDir(d))
	}
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
	}
	if b, _ := os.ReadFile(filepath.Join(hc.dir, limitFile)); strings.TrimSpace(string(b)) != strconv.Itoa(96<<20) {
		t.Errorf("%s = %q, want %d", limitFile, b, 96<<20)
	}

	cmd := exec.Command("sleep", "60")
	if err := hc.start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if got, _ := ownMemoryCgroup(hier, v2); got != home {
		t.Errorf("after starting the helper this process is in %s, want %s", got, home)
	}
	if pids := helperPids(d); len(pids) != 1 || !pids[cmd.Process.Pid] {
		t.Errorf("helperPids = %v, want the helper %d alone", pids, cmd.Process.Pid)
	}
	if err := removeHelperCgroup(d); err == nil {
		t.Error("removed the helper cgroup while the helper runs")
	}
	cmd.Process.Kill()
	cmd.Wait()
	exited = true
	if err := removeHelperCgroup(d); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(hc.dir); err == nil {
		t.Errorf("%s left after removal", hc.dir)
	}

	off, err := newHelperCgroup(d, 0)
	if err != nil || off.dir != "" {
		t.Errorf("helper_memory_mib 0: %+v, %v, want no cgroup", off, err)
	}
	tr := exec.Command("true")
	if err := off.start(tr); err != nil {
		t.Fatal(err)
	}
	tr.Wait()
}
