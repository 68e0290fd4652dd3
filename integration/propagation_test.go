package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestBindPropagationHostToContainer: a volume with rslave propagation
// (Kubernetes' HostToContainer; rshared, Bidirectional, gives the same
// direction) shows what the host mounts below its source after the
// container started, as CSI drivers and node agents need; a volume without
// it does not. The sources are shared mounts, as kubelet's directory is.
func TestBindPropagationHostToContainer(t *testing.T) {
	e := newEnv(t)
	base := t.TempDir()
	src := map[string]string{}
	for _, n := range []string{"follow", "private"} {
		dir := filepath.Join(base, n)
		os.MkdirAll(dir, 0o755)
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
			t.Fatal(err)
		}
		os.Mkdir(filepath.Join(dir, "sub"), 0o755)
		src[n] = dir
	}
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/follow", Type: "bind", Source: src["follow"], Options: []string{"rbind", "rslave"}},
		specs.Mount{Destination: "/private", Type: "bind", Source: src["private"], Options: []string{"rbind", "rprivate"}},
	)
	// The container waits until the host's new mount shows (or 60 s pass),
	// then reports what it sees in both volumes.
	e.spec.Process.Args = []string{"sh", "-c", `i=0; while [ ! -e /follow/sub/marker ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
cat /follow/sub/marker 2>/dev/null || echo follow-missing; cat /private/sub/marker 2>/dev/null || echo private-missing`}
	pid, stdout, _ := e.create("prop")
	_ = pid
	e.mustRun("start", "prop")
	time.Sleep(500 * time.Millisecond) // the container is running by now
	for n, dir := range src {
		sub := filepath.Join(dir, "sub")
		if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })
		os.WriteFile(filepath.Join(sub, "marker"), []byte("mounted-later-"+n+"\n"), 0o644)
	}
	out := make([]byte, 4096)
	stdout.SetReadDeadline(time.Now().Add(90 * time.Second))
	var got strings.Builder
	for !strings.Contains(got.String(), "missing") && strings.Count(got.String(), "\n") < 2 {
		n, err := stdout.Read(out)
		got.Write(out[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(got.String(), "mounted-later-follow\n") {
		t.Errorf("rslave volume: the container did not see the host's later mount: %q", got.String())
	}
	if !strings.Contains(got.String(), "private-missing\n") {
		t.Errorf("rprivate volume: the host's later mount leaked into the container: %q", got.String())
	}
	e.mustRun("delete", "--force", "prop")
}
