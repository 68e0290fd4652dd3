package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A --root reached through a symlink, as a stock dockerd gives it
// (/var/run/docker/runtime-runc/moby, with /var/run -> /run): writes to a
// bind mount reach the host, run exits with the workload's code, the
// created-then-started path works with state and delete given the same
// spelling, and nothing is left under the real root. Before the root was
// resolved, the write was lost and the state could not be removed (busy).
func TestRootThroughSymlink(t *testing.T) {
	e := newEnv(t)
	link := e.root + "-link"
	if err := os.Symlink(e.root, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
	// The root as a client names it: through the link, and one level below
	// it that does not exist yet (docker's runtime-NAME/moby).
	root := filepath.Join(link, "moby")
	viaLink := func(stdin string, args ...string) result {
		t.Helper()
		for i, a := range args {
			if (a == "create" || a == "run") && len(args) > i+1 {
				e.ids = append(e.ids, args[len(args)-1])
			}
		}
		cmd := exec.Command(runvirtBin, append([]string{"--root", root, "--config", e.config}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		// Files, not pipes: a created container's stand-in keeps its
		// stdio open after create returns.
		out, _ := os.CreateTemp(t.TempDir(), "out")
		errf, _ := os.CreateTemp(t.TempDir(), "err")
		defer out.Close()
		defer errf.Close()
		cmd.Stdout, cmd.Stderr = out, errf
		err := cmd.Run()
		ob, _ := os.ReadFile(out.Name())
		eb, _ := os.ReadFile(errf.Name())
		r := result{stdout: string(ob), stderr: string(eb)}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("runvirt %v: %v", args, err)
		}
		t.Logf("runvirt --root %s %v: exit %d\nstdout: %q\nstderr: %q", root, args, r.code, r.stdout, r.stderr)
		return r
	}

	// As `runc spec` and docker's read-only containers have it; the share's
	// lost binds showed first there.
	e.spec.Root.Readonly = true
	data := t.TempDir()
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw"}})
	e.spec.Process.Args = []string{"sh", "-c", "echo kept > /data/f; exit 3"}
	e.writeSpec()
	if r := viaLink("", "run", "--bundle", e.bundle, "vialink"); r.code != 3 {
		t.Fatalf("run: exit %d, want the workload's 3: %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(data, "f")); string(got) != "kept\n" {
		t.Errorf("write to the bind mount: host sees %q, want %q", got, "kept\n")
	}
	if exists(filepath.Join(e.root, "moby", "vialink")) {
		t.Error("run left its state behind")
	}

	// create, start, state and delete: each a new process, each given the
	// linked spelling; the sandbox must be found and removed.
	e.spec.Process.Args = []string{"sh", "-c", "echo again > /data/g; sleep 600"}
	e.writeSpec()
	if r := viaLink("", "create", "--bundle", e.bundle, "vialink2"); r.code != 0 {
		t.Fatalf("create: exit %d: %q", r.code, r.stderr)
	}
	if r := viaLink("", "start", "vialink2"); r.code != 0 {
		t.Fatalf("start: exit %d: %q", r.code, r.stderr)
	}
	if r := viaLink("", "state", "vialink2"); r.code != 0 || !strings.Contains(r.stdout, `"running"`) {
		t.Errorf("state: exit %d, %q; want running", r.code, r.stdout)
	}
	var got []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, _ = os.ReadFile(filepath.Join(data, "g")); string(got) == "again\n" {
			break
		}
	}
	if string(got) != "again\n" {
		t.Errorf("write to the bind mount of the created container: host sees %q", got)
	}
	if r := viaLink("", "delete", "--force", "vialink2"); r.code != 0 {
		t.Errorf("delete --force: exit %d: %q", r.code, r.stderr)
	}
	for _, id := range []string{"vialink", "vialink2"} {
		if d := socketDir(filepath.Join(e.root, "moby"), id); exists(d) {
			t.Errorf("socket dir of %s left behind: %s", id, d)
		}
	}
	os.Remove(filepath.Join(e.root, "moby")) // an empty root dir is not state
}
