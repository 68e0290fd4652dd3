package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// emptyDir reports whether dir holds nothing.
func emptyDir(t *testing.T, dir string) bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) == 0
}

// loadBundleWith loads a fresh bundle whose spec has these mounts.
func loadBundleWith(t *testing.T, mounts ...specs.Mount) *Bundle {
	t.Helper()
	b, err := LoadBundle(writeBundle(t, goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Mounts = mounts
	return b
}

// A symlink planted where the host makes a pod member's directories (as a
// guest with the share mounted could plant one, on the exported side or on
// the host's) is never followed: nothing is made or mounted where it
// points, then or at removal.
func TestPrepareShareDoesNotFollowPlantedSymlinks(t *testing.T) {
	requiresRoot(t)
	for _, plant := range []string{"c2", "c2/mounts"} {
		t.Run(strings.ReplaceAll(plant, "/", "_"), func(t *testing.T) {
			d := Dir{Root: t.TempDir(), ID: "sb"}
			os.Mkdir(d.Path(), 0o700)
			var cl1 cleanup
			defer cl1.Run()
			if _, err := prepareShare(d, "c1", loadBundleWith(t), &cl1); err != nil {
				t.Fatal(err)
			}
			outside, volume := t.TempDir(), t.TempDir()
			planted := 0
			for _, side := range []string{"shared", "share-skeleton"} {
				p := filepath.Join(d.Path(), side, plant)
				os.MkdirAll(filepath.Dir(p), 0o711)
				if os.Symlink(outside, p) == nil {
					planted++
				}
			}
			if planted == 0 {
				t.Fatal("could not plant the symlink on either side of the share")
			}
			b2 := loadBundleWith(t, specs.Mount{Destination: "/v", Type: "bind", Source: volume, Options: []string{"rbind"}})
			var cl2 cleanup
			_, err := prepareShare(d, "c2", b2, &cl2)
			if err == nil {
				t.Error("prepareShare followed a planted symlink")
			}
			if m, _ := mountsUnder(outside); len(m) != 0 {
				t.Errorf("mounted where the planted symlink points: %v", m)
			}
			if !emptyDir(t, outside) {
				t.Error("made directories where the planted symlink points")
			}
			cl2.Run()
			cl1.Run()
			if err := removeMounted(d.Path()); err != nil {
				t.Fatal(err)
			}
			if m, _ := mountsUnder(outside); len(m) != 0 {
				t.Errorf("mounts left where the planted symlink points: %v", m)
			}
			if m, _ := mountsUnder(d.Root); len(m) != 0 {
				t.Errorf("mounts left in the state: %v", m)
			}
		})
	}
}

// Bind sources are what the kernel resolves them to: a source ending in
// ".." or reached through a symlink is bound and named as the directory it
// resolves to, and the share's mount points never nest in a source.
// Sources in runvirt's state are refused.
func TestPrepareShareResolvesSources(t *testing.T) {
	requiresRoot(t)
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	x, z := filepath.Join(tmp, "x"), filepath.Join(tmp, "z")
	os.MkdirAll(filepath.Join(x, "sub"), 0o755)
	os.MkdirAll(z, 0o755)
	os.WriteFile(filepath.Join(z, "f"), []byte("z"), 0o644)
	os.Symlink(z, filepath.Join(tmp, "link"))
	b := loadBundleWith(t,
		specs.Mount{Destination: "/a", Type: "bind", Source: x + "/sub/..", Options: []string{"rbind"}},
		specs.Mount{Destination: "/b", Type: "bind", Source: z, Options: []string{"rbind"}},
		specs.Mount{Destination: "/c", Type: "bind", Source: filepath.Join(tmp, "link"), Options: []string{"rbind"}},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(tmp, "link", "f"), Options: []string{"rbind", "ro"}},
	)
	d := Dir{Root: filepath.Join(tmp, "root"), ID: "c1"}
	os.MkdirAll(d.Path(), 0o700)
	var cl cleanup
	spec, err := prepareShare(d, "c1", b, &cl)
	if err != nil {
		cl.Run()
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(x)
	if len(ents) != 1 || ents[0].Name() != "sub" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the share's mount points nested in the source %s: it holds %v", x, names)
	}
	for i, want := range []string{x, z, z} {
		if got := spec.Mounts[i].Source; got != GuestMount("c1", i, want) {
			t.Errorf("mount %d: guest source %s, want %s", i, got, GuestMount("c1", i, want))
		}
	}
	if _, err := os.Stat(filepath.Join(d.Path(), "shared", "c1", "mounts", "0", "x", "sub")); err != nil {
		t.Errorf("mount 0 is not the resolved source: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(d.Path(), "shared", "c1", "mounts", "2", "z", "f")); string(got) != "z" {
		t.Errorf("mount 2 is not the symlink's target: %q", got)
	}
	// A file's bind, through a symlinked directory.
	if got, _ := os.ReadFile(filepath.Join(d.Path(), "shared", ShareMount("c1", 3, filepath.Join(z, "f")))); string(got) != "z" {
		t.Errorf("file bind through a symlink: %q", got)
	}
	cl.Run()
	if err := removeMounted(d.Path()); err != nil {
		t.Fatal(err)
	}

	// A source that resolves into the state root: another sandbox's state.
	other := filepath.Join(d.Root, "other")
	os.MkdirAll(other, 0o700)
	os.Symlink(other, filepath.Join(tmp, "tostate"))
	os.MkdirAll(d.Path(), 0o700)
	for _, src := range []string{other, filepath.Join(tmp, "tostate")} {
		b := loadBundleWith(t, specs.Mount{Destination: "/s", Type: "bind", Source: src, Options: []string{"rbind"}})
		var cl cleanup
		_, err := prepareShare(d, "c1", b, &cl)
		cl.Run()
		if err == nil || !strings.Contains(err.Error(), "runvirt's own state") {
			t.Errorf("source %s in the state root: got %v, want it refused", src, err)
		}
	}
	if err := removeMounted(d.Path()); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountsUnder(tmp); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
}

// A sandbox made by an older runvirt exports a share its guest writes, with
// no skeleton: a member is refused with the fix, not bound where the guest
// would never see it.
func TestPrepareShareRefusesOlderLayout(t *testing.T) {
	requiresRoot(t)
	d := Dir{Root: t.TempDir(), ID: "old"}
	old := filepath.Join(d.Path(), "shared")
	os.MkdirAll(old, 0o711)
	if err := unix.Mount(old, old, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	var cl cleanup
	_, err := prepareShare(d, "c1", loadBundleWith(t), &cl)
	cl.Run()
	if err == nil || !strings.Contains(err.Error(), "recreate the sandbox") {
		t.Errorf("got %v, want the older layout refused", err)
	}
	if err := removeMounted(d.Path()); err != nil {
		t.Fatal(err)
	}
}
