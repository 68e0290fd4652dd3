package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What a caller leaves open without close-on-exec (a directory, a secret
// file, the fds it names in --preserve-fds, which runvirt ignores) reaches
// none of the processes runvirt starts: the monitor, QEMU, virtiofsd, the
// stand-in, the hooks (the class of runc's CVE-2024-21626).
func TestNoInheritedFDs(t *testing.T) {
	e := newEnv(t)
	secretPath := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretPath, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open("/etc")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	secret, err := os.Open(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Close()
	leaked := []*os.File{dir, secret}
	hookOut := filepath.Join(t.TempDir(), "hook-fds")
	e.spec.Process.Args = []string{"sleep", "600"}
	e.spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{ //nolint:staticcheck // docker 20.10 still uses it
		Path: "/bin/sh", Args: []string{"sh", "-c", "ls -l /proc/$$/fd/ > " + hookOut},
	}}}
	e.writeSpec()

	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	pidFile := filepath.Join(e.bundle, "fds.pid")
	cmd := e.command("--log", filepath.Join(e.root, "runvirt.log"), "create", "--bundle", e.bundle,
		"--pid-file", pidFile, "--preserve-fds", "2", "fds")
	// fds 3 to 6 in runvirt: 3 and 4 are the --preserve-fds ones.
	cmd.ExtraFiles = []*os.File{dir, secret, dir, secret}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, devNull
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(filepath.Join(e.root, "runvirt.log"))
		t.Fatalf("create: %v\n%s", err, b)
	}
	standIn := readPid(t, pidFile)

	procs := map[string][]int{"stand-in": {standIn}}
	for _, p := range processesMentioning(e.root) {
		switch {
		case strings.Contains(p.cmdline, " monitor "):
			procs["monitor"] = append(procs["monitor"], p.pid)
		case strings.Contains(p.cmdline, "qemu-system"):
			procs["qemu"] = append(procs["qemu"], p.pid)
		case strings.Contains(p.cmdline, "virtiofsd"):
			procs["virtiofsd"] = append(procs["virtiofsd"], p.pid)
		}
	}
	for _, kind := range []string{"monitor", "qemu", "virtiofsd", "stand-in"} {
		if len(procs[kind]) == 0 {
			t.Errorf("no %s found", kind)
		}
		for _, pid := range procs[kind] {
			checkNoLeakedFD(t, kind, pid, leaked, e.root)
		}
	}
	// The hook listed its own fds: stdin (the state), stdout (the file),
	// stderr and the one ls opened to list them.
	b, err := os.ReadFile(hookOut)
	if err != nil {
		t.Fatalf("the hook left no listing: %v", err)
	}
	if s := string(b); strings.Contains(s, "-> /etc") || strings.Contains(s, secretPath) {
		t.Errorf("an inherited fd reached the hook:\n%s", s)
	}
	e.mustRun("delete", "--force", "fds")
}

// checkNoLeakedFD fails if any fd of pid is one of leaked, or a host path
// outside what runvirt's processes open themselves (the state under root,
// runvirt's sockets and leases, devices, cgroup files, QEMU's memfd), and
// logs what pid holds open. virtiofsd's paths are its own namespace's.
func checkNoLeakedFD(t *testing.T, kind string, pid int, leaked []*os.File, root string) {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Errorf("%s %d: %v", kind, pid, err)
		return
	}
	var held []string
	for _, en := range ents {
		p := filepath.Join(fdDir, en.Name())
		target, _ := os.Readlink(p)
		held = append(held, en.Name()+"->"+target)
		if kind != "virtiofsd" && strings.HasPrefix(target, "/") && !expectedPath(target, root) {
			t.Errorf("%s %d holds an unexpected fd %s -> %s", kind, pid, en.Name(), target)
		}
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		for _, l := range leaked {
			if li, err := l.Stat(); err == nil && os.SameFile(fi, li) {
				t.Errorf("%s %d holds the caller's %s as fd %s", kind, pid, l.Name(), en.Name())
			}
		}
	}
	t.Logf("%s %d: %s", kind, pid, strings.Join(held, " "))
}

func expectedPath(p, root string) bool {
	for _, prefix := range []string{root + "/", "/run/runvirt", "/dev/", "/sys/fs/cgroup/", "/memfd:"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
