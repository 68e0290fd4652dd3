package integration

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/runtime"
)

// The attacks here come from root in the guest, with the share mounted:
// over virtio-fs from a container with every capability (docker run
// --privileged) that mounts the VM's share itself, as the guest kernel lets
// it; over 9p, whose tag takes one mount only, from the debug shell, in the
// guest outside the containers (by design the guest kernel is no boundary).

// privileged gives a spec's process every capability and no masked paths.
func privileged(s *specs.Spec) {
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: allCaps, Effective: allCaps, Permitted: allCaps}
	s.Process.NoNewPrivileges = false
	s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
}

// shareFSes runs f once over virtio-fs and once over 9p (with the debug
// shell on).
func shareFSes(t *testing.T, f func(t *testing.T, e *env, shareFS string)) {
	for _, shareFS := range []string{"virtio-fs", "9p"} {
		t.Run(shareFS, func(t *testing.T) {
			var opts []envOpt
			if shareFS == "9p" {
				opts = append(opts, with9p)
			}
			e := newEnv(t, opts...)
			if shareFS == "9p" {
				e.setConfig("accel = ", "debug_shell = true\naccel = ")
			}
			f(t, e, shareFS)
		})
	}
}

// asGuestRoot runs script as root in the guest of sandbox id, with $S the
// share's root, and returns what it printed: marks printed with mark() come
// back as lines "@@WORD" (the debug shell's terminal echoes its input; a
// mark's text is never in it).
func asGuestRoot(t *testing.T, e *env, shareFS, id, script string) []string {
	t.Helper()
	var out string
	script = `mark() { printf '%s%s\n' '@@' "$1"; }; ` + script
	if shareFS == "9p" {
		cmd := e.command("debug-shell", id)
		cmd.Stdin = strings.NewReader("S=/run/runvirt/shared; " + script + "\nexit\n")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("debug-shell: %v: %s", err, b)
		}
		out = string(b)
	} else {
		out = e.mustRun("exec", id, "sh", "-c",
			`S=/mnt/share; mkdir -p $S && mount -t virtiofs runvirt $S || { echo "@@""mount-failed"; exit 0; }; `+script)
	}
	t.Logf("as guest root: %s", out)
	var marks []string
	for _, l := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "@@"); ok {
			marks = append(marks, m)
		}
	}
	if slices.Contains(marks, "mount-failed") {
		t.Fatal("the container could not mount the share: the attack did not run")
	}
	return marks
}

// unmountLeftovers unmounts whatever a failed run left mounted below dir,
// so that one failure does not stay on the host.
func unmountLeftovers(t *testing.T, dir string) {
	t.Cleanup(func() {
		m := mountsUnder(dir)
		for i := len(m) - 1; i >= 0; i-- {
			syscall.Unmount(m[i], syscall.MNT_DETACH)
		}
	})
}

// listTree lists every path below dir (not crossing into nothing: a mount
// there is listed with its content).
func listTree(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// A pod container that replaces a directory of the share with a symlink to
// a host directory (Kata's CVE-2020-2026) must not steer the host: creating
// the pod's next container makes and mounts nothing there, and nothing is
// left there after the delete. The guest cannot plant the symlink at all:
// the directories of the share are read-only to it.
func TestShareGuestSymlinkIsNotFollowed(t *testing.T) {
	shareFSes(t, func(t *testing.T, e *env, shareFS string) {
		hostDir := t.TempDir()
		unmountLeftovers(t, hostDir)
		privileged(e.spec)
		e.spec.Annotations = map[string]string{runtime.AnnotationCRIType: "sandbox", runtime.AnnotationCRISandbox: "pod"}
		e.spec.Process.Args = []string{"sleep", "600"}
		pid, _, _ := e.create("pod")
		e.mustRun("start", "pod")

		// The next member's directory, and the pod container's own, become
		// symlinks to the host directory.
		marks := asGuestRoot(t, e, shareFS, "pod", `ln -s `+hostDir+` $S/app && mark planted-app; `+
			`ln -s `+hostDir+` $S/pod/mounts && mark planted-mounts; ls -la $S`)
		for _, m := range marks {
			if strings.HasPrefix(m, "planted") {
				t.Errorf("the guest planted a symlink in the share: %s", m)
			}
		}

		volume := t.TempDir()
		os.WriteFile(filepath.Join(volume, "f"), []byte("volume\n"), 0o644)
		ann := map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "pod"}
		mb := e.podMember("app", pid, ann, "cat", "/v/f")
		s := readSpec(t, mb)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: volume, Options: []string{"rbind", "rw"}})
		writeSpecTo(t, mb, s)
		cmd := e.command("create", "--bundle", mb, "app")
		created := cmd.Run() == nil
		if m := mountsUnder(hostDir); len(m) != 0 {
			t.Errorf("the host mounted the member's rootfs or volume where the guest's symlink points: %v", m)
		}
		if l := listTree(hostDir); len(l) != 0 {
			t.Errorf("the host made %v where the guest's symlink points", l)
		}
		if created {
			if r := e.run("", "start", "app"); r.code != 0 {
				t.Errorf("start app: exit %d, %s", r.code, r.stderr)
			}
			e.mustRun("delete", "--force", "app")
		}
		e.mustRun("delete", "--force", "pod")
		if m := mountsUnder(hostDir); len(m) != 0 {
			t.Errorf("mounts left where the guest's symlink points after delete: %v", m)
		}
		if l := listTree(hostDir); len(l) != 0 {
			t.Errorf("left %v where the guest's symlink points after delete", l)
		}
		if b, _ := os.ReadFile(filepath.Join(volume, "f")); string(b) != "volume\n" {
			t.Errorf("the volume's file holds %q", b)
		}
	})
}

// The share's directories live in the sandbox's state under --root (a
// tmpfs on most hosts): the guest writing there must not put one byte into
// the host's state. The container's rootfs, its own storage, takes writes
// as before.
func TestShareSkeletonIsNotGuestStorage(t *testing.T) {
	shareFSes(t, func(t *testing.T, e *env, shareFS string) {
		privileged(e.spec)
		volume := t.TempDir()
		n := len(e.spec.Mounts)
		e.spec.Mounts = append(e.spec.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: volume, Options: []string{"rbind", "rw"}})
		e.spec.Process.Args = []string{"sleep", "600"}
		e.create("fill")
		e.mustRun("start", "fill")
		// 32 MiB into each directory of the share the host made, and into
		// the rootfs and the volume, which may take them.
		mounts := fmt.Sprintf("/fill/mounts/%d", n)
		own := []string{"/fill/rootfs", mounts + "/" + filepath.Base(volume)}
		var script strings.Builder
		for _, d := range append([]string{"", "/fill", "/fill/mounts", mounts}, own...) {
			fmt.Fprintf(&script, `head -c 33554432 /dev/zero > $S%s/guest-junk 2>/dev/null && mark wrote=%s; `, d, d)
			fmt.Fprintf(&script, `mkdir $S%s/guest-dir 2>/dev/null && mark made=%s; `, d, d)
		}
		script.WriteString("sync")
		marks := asGuestRoot(t, e, shareFS, "fill", script.String())
		for _, m := range marks {
			k, d, _ := strings.Cut(m, "=")
			if (k == "wrote" || k == "made") && !slices.Contains(own, d) {
				t.Errorf("the guest %s in the share's directory %q", map[string]string{"wrote": "wrote 32 MiB", "made": "made a directory"}[k], path.Clean("/"+d))
			}
		}
		for _, d := range own {
			if !slices.Contains(marks, "wrote="+d) {
				t.Errorf("the guest could not write its own storage (%s): %v", d, marks)
			}
		}
		if _, err := os.Stat(filepath.Join(volume, "guest-junk")); err != nil {
			t.Errorf("the volume did not get the guest's write: %v", err)
		}
		if _, err := os.Stat(filepath.Join(e.bundle, "rootfs", "guest-junk")); err != nil {
			t.Errorf("the rootfs did not get the guest's write: %v", err)
		}
		e.mustRun("delete", "--force", "fill")
	})
}

// Bind sources are normalised and resolved before use: a source ending in
// ".." is the directory it resolves to and the share's mount points never
// nest inside it; a symlinked source mounts its target; a source that
// resolves into runvirt's state is refused.
func TestBindSourceIsResolved(t *testing.T) {
	e := newEnv(t)
	base := t.TempDir()
	x, y := filepath.Join(base, "x"), filepath.Join(base, "y")
	os.MkdirAll(filepath.Join(x, "sub"), 0o755)
	os.MkdirAll(y, 0o755)
	os.WriteFile(filepath.Join(y, "f"), []byte("from-y\n"), 0o644)
	os.Symlink(y, filepath.Join(base, "link"))
	e.spec.Mounts = append(e.spec.Mounts,
		specs.Mount{Destination: "/a", Type: "bind", Source: x + "/sub/..", Options: []string{"rbind", "rw"}},
		specs.Mount{Destination: "/b", Type: "bind", Source: y, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/c", Type: "bind", Source: filepath.Join(base, "link"), Options: []string{"rbind", "ro"}},
	)
	r := e.runArgs("res", "sh", "-c", `echo "a=$(ls /a | tr '\n' ' ')"; echo "c=$(cat /c/f)"`)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "a=sub \n") {
		t.Errorf("/a (source %s/sub/..) shows %q, want x's content alone", x, r.stdout)
	}
	if !strings.Contains(r.stdout, "c=from-y\n") {
		t.Errorf("/c (a symlinked source) shows %q", r.stdout)
	}
	if l := listTree(x); len(l) != 1 || l[0] != "sub" {
		t.Errorf("the share's mount points nested in the source %s: it holds %v", x, l)
	}

	// Into the state root, directly or through a symlink: refused.
	os.Symlink(e.root, filepath.Join(base, "tostate"))
	for _, src := range []string{e.root, filepath.Join(base, "tostate")} {
		e.spec.Mounts = append(defaultSpec().Mounts, specs.Mount{Destination: "/s", Type: "bind", Source: src, Options: []string{"rbind"}})
		e.writeSpec()
		e.mustFail("runvirt's own state", "run", "--bundle", e.bundle, "state")
	}
}
