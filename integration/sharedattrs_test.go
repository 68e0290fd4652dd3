package integration

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestBindFileRewrittenBeforeStart: a bind-mounted file that the client
// rewrites between create and start (docker ≥ 28 appends the container's
// address to /etc/hosts after it joined the network) reads whole in the
// workload: the guest must not keep the size it saw at create.
func TestBindFileRewrittenBeforeStart(t *testing.T) {
	e := newEnv(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"rbind", "ro"}})
	e.spec.Process.Args = []string{"cat", "/etc/hosts"}
	_, stdout, _ := e.create("attrs")
	// In place, as docker does it: the same inode, a new size.
	f, err := os.OpenFile(hosts, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("10.0.0.2\tcontainer-host\n")
	f.Close()
	e.mustRun("start", "attrs")
	out, _ := io.ReadAll(stdout)
	if want := "127.0.0.1\tlocalhost\n10.0.0.2\tcontainer-host\n"; string(out) != want {
		t.Errorf("the workload read %q, want %q", out, want)
	}
	if !e.waitStatus("attrs", "stopped", 10*time.Second) {
		t.Fatal("not stopped 10 s after the workload exited")
	}
	e.mustRun("delete", "attrs")
}
