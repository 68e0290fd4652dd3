package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func openDirT(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A symlink at any step of the path, the last one included, is refused and
// nothing is made where it points.
func TestMkdirAllBeneathRefusesSymlinks(t *testing.T) {
	for step := range 3 {
		base, outside := t.TempDir(), t.TempDir()
		parts := []string{"a", "b", "c"}
		prefix := filepath.Join(base, filepath.Join(parts[:step]...))
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(prefix, parts[step])); err != nil {
			t.Fatal(err)
		}
		f, err := mkdirAllBeneath(openDirT(t, base), "a/b/c/d", 0o711)
		if err == nil {
			f.Close()
			t.Errorf("step %d: a symlink in the path was followed", step)
		}
		if !emptyDir(t, outside) {
			t.Errorf("step %d: made something where the symlink points", step)
		}
		// The same for a mount point, a directory's or a file's.
		for _, isDir := range []bool{true, false} {
			if f, err := makeMountpointBeneath(openDirT(t, base), "a/b/c/m", isDir); err == nil {
				f.Close()
				t.Errorf("step %d: a mount point was made through a symlink", step)
			}
		}
		if !emptyDir(t, outside) {
			t.Errorf("step %d: made a mount point where the symlink points", step)
		}
	}
	base, outside := t.TempDir(), t.TempDir()
	os.Symlink(outside, filepath.Join(base, "m"))
	os.Symlink(filepath.Join(outside, "f"), filepath.Join(base, "f"))
	for _, tc := range []struct {
		rel   string
		isDir bool
	}{{"m", true}, {"f", false}, {"m", false}} {
		if f, err := makeMountpointBeneath(openDirT(t, base), tc.rel, tc.isDir); err == nil {
			f.Close()
			t.Errorf("%s: a symlink was taken for a mount point", tc.rel)
		}
	}
	if !emptyDir(t, outside) {
		t.Error("made something where a mount point's symlink points")
	}
	if f, err := openBeneath(openDirT(t, base), "m"); err == nil {
		f.Close()
		t.Error("openBeneath followed a symlink")
	}
}

// Paths that are not plain downward paths are refused, however they would
// resolve.
func TestBeneathRefusesDotDot(t *testing.T) {
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "a", "b"), 0o755)
	dir := openDirT(t, base)
	for _, rel := range []string{"..", "../x", "a/../b", "a/b/..", "/etc", "", "a//b", "./a"} {
		if f, err := mkdirAllBeneath(dir, rel, 0o711); err == nil {
			f.Close()
			t.Errorf("mkdirAllBeneath %q: want an error", rel)
		}
		if f, err := openBeneath(dir, rel); err == nil {
			f.Close()
			t.Errorf("openBeneath %q: want an error", rel)
		}
		if f, err := makeMountpointBeneath(dir, rel, true); err == nil {
			f.Close()
			t.Errorf("makeMountpointBeneath %q: want an error", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(base), "x")); err == nil {
		t.Error("made something above the directory")
	}
	f, err := mkdirAllBeneath(dir, "a/b/c", 0o711)
	if err != nil {
		t.Fatalf("a plain path: %v", err)
	}
	f.Close()
}

// An unmount by a path the guest rearranged (a directory swapped for a
// symlink to a host mount's parent) does not reach the host's mount.
func TestUnmountBeneathRefusesSymlink(t *testing.T) {
	requiresRoot(t)
	base, outside := t.TempDir(), t.TempDir()
	hostMount := filepath.Join(outside, "m")
	os.Mkdir(hostMount, 0o755)
	if err := unix.Mount("tmpfs", hostMount, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(hostMount, unix.MNT_DETACH) })
	os.Symlink(outside, filepath.Join(base, "link"))
	if _, err := unmountBeneath(openDirT(t, base), "link/m"); err == nil {
		t.Error("unmountBeneath followed a symlink")
	}
	if m, _ := mountsUnder(hostMount); len(m) != 1 {
		t.Fatalf("the host's mount was unmounted: %v", m)
	}
	// unmountUnder, which removal uses, skips it the same way.
	os.Mkdir(filepath.Join(base, "real"), 0o755)
	if err := unmountUnder(base); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountsUnder(hostMount); len(m) != 1 {
		t.Fatalf("the host's mount was unmounted: %v", m)
	}
	// A mount that is really below the directory goes.
	own := filepath.Join(base, "real")
	if err := unix.Mount("tmpfs", own, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if ok, err := unmountBeneath(openDirT(t, base), "real"); err != nil || !ok {
		t.Fatalf("unmount below the directory: %v, %v", ok, err)
	}
	if m, _ := mountsUnder(own); len(m) != 0 {
		t.Fatalf("still mounted: %v", m)
	}
}

// A bind source is what the kernel resolves it to, and runvirt's own state
// is never one.
func TestOpenSourceResolves(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(tmp, "x", "sub"), 0o755)
	os.Symlink(filepath.Join(tmp, "x"), filepath.Join(tmp, "link"))
	state := filepath.Join(tmp, "state")
	os.MkdirAll(filepath.Join(state, "sb"), 0o700)
	os.Symlink(filepath.Join(state, "sb"), filepath.Join(tmp, "tostate"))
	for src, want := range map[string]string{
		filepath.Join(tmp, "x", "sub") + "/..": filepath.Join(tmp, "x"),
		filepath.Join(tmp, "link"):             filepath.Join(tmp, "x"),
		filepath.Join(tmp, "link", "sub", "."): filepath.Join(tmp, "x", "sub"),
		filepath.Join(tmp, "link") + "//sub/":  filepath.Join(tmp, "x", "sub"),
	} {
		f, got, err := openSource(src, []string{state})
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		f.Close()
		if got != want {
			t.Errorf("%s resolved to %s, want %s", src, got, want)
		}
	}
	for _, src := range []string{state, filepath.Join(state, "sb"), filepath.Join(tmp, "tostate"), tmp + "/tostate/../sb"} {
		if f, _, err := openSource(src, []string{state}); err == nil || !strings.Contains(err.Error(), "runvirt's own state") {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: want it refused as runvirt's state, got %v", src, err)
		}
	}
	if _, _, err := openSource(filepath.Join(tmp, "missing"), nil); err == nil {
		t.Error("a missing source: want an error")
	}
}
