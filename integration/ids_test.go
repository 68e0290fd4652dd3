package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Container ids that look like flags are valid, as for runc (its pattern
// allows a leading '-'): given after "--", create, start, state and
// delete work with them, and runvirt's own command lines (the monitor's,
// the stand-in's) never read them as options.
func TestFlagLikeIDs(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "600"}
	e.writeSpec()
	for _, id := range []string{"--debug", "-d"} {
		pidFile := filepath.Join(e.bundle, "flaglike.pid")
		os.Remove(pidFile)
		cmd := e.command("--log", filepath.Join(e.root, "runvirt.log"), "create", "--bundle", e.bundle, "--pid-file", pidFile, "--", id)
		// Not pipes: the stand-in keeps the container's stdio open.
		devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, devNull
		err = cmd.Run()
		devNull.Close()
		if err != nil {
			b, _ := os.ReadFile(filepath.Join(e.root, "runvirt.log"))
			t.Fatalf("create %q: %v\n%s", id, err, b)
		}
		if st, ok := e.state(id); !ok || st.Status != "created" || st.ID != id || st.Pid != readPid(t, pidFile) {
			t.Fatalf("state of %q after create: %+v %v", id, st, ok)
		}
		e.mustRun("start", "--", id)
		if st, ok := e.state(id); !ok || st.Status != "running" {
			t.Errorf("state of %q after start: %+v %v", id, st, ok)
		}
		e.mustRun("kill", "--", id, "KILL")
		if !e.waitStatus(id, "stopped", 30*time.Second) {
			t.Errorf("%q did not stop", id)
		}
		e.mustRun("delete", "--", id)
		if _, ok := e.state(id); ok {
			t.Errorf("state of %q after delete", id)
		}
	}
}
