package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

// A root given through a symlink (docker's /var/run/docker with /var/run ->
// /run) must come back as the kernel names it, also where its last parts do
// not exist yet, and a relative root must become absolute.
func TestResolveRoot(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(tmp, "run")
	if err := os.MkdirAll(filepath.Join(real, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "var-run")
	if err := os.Symlink("run", link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{link, real},
		{filepath.Join(link, "docker"), filepath.Join(real, "docker")},
		{filepath.Join(link, "docker", "runtime-runvirt", "moby"), filepath.Join(real, "docker", "runtime-runvirt", "moby")},
		{filepath.Join(link, "docker", "..", "x"), filepath.Join(real, "x")},
		{real + "/", real},
	} {
		got, err := ResolveRoot(tc.in)
		if err != nil {
			t.Fatalf("ResolveRoot(%s): %v", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("ResolveRoot(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if _, err := os.Lstat(filepath.Join(real, "docker", "runtime-runvirt")); err == nil {
			t.Errorf("ResolveRoot(%s) created directories", tc.in)
		}
	}
	t.Chdir(link)
	if got, err := ResolveRoot("docker"); err != nil || got != filepath.Join(real, "docker") {
		t.Errorf("ResolveRoot(docker) in %s = %s, %v; want %s", link, got, err, filepath.Join(real, "docker"))
	}
	if _, err := ResolveRoot(""); err == nil {
		t.Error("ResolveRoot(\"\") gave no error")
	}
	// A file where a directory is needed is an error, not a path.
	f := filepath.Join(real, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ResolveRoot(filepath.Join(f, "x")); err == nil {
		t.Errorf("ResolveRoot under a file = %s, want an error", got)
	}
}
