// Package testutil holds what the tests of several packages share: checks
// for what a test needs from the host (root, QEMU, busybox, tools, the
// guest image `make` built), and test data such as docker's device rules.
//
// A check that fails skips the test with the cause and the fix, so a plain
// `go test ./...` needs nothing. With RUNVIRT_REQUIRE_INTEGRATION=1 (set by
// .ci/run, which runs as root with everything installed) it fails the test
// instead: CI can never pass by skipping.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireEnv names the variable that turns a missing prerequisite from a
// skip into a failure.
const RequireEnv = "RUNVIRT_REQUIRE_INTEGRATION"

// Busybox is the static busybox (Debian's busybox-static) the tests put in
// their root filesystems.
const Busybox = "/bin/busybox"

// Missing skips t, or fails it under RUNVIRT_REQUIRE_INTEGRATION=1, saying
// what is missing: cause names the prerequisite and the fix, as in
// "qemu-system-x86_64 is not installed (run: make deps)".
func Missing(t testing.TB, cause string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("integration prerequisite missing: %s", cause)
	}
	t.Skipf("skipping: %s", cause)
}

// RequiresRoot stops a test that is not run as root; why says what it does
// as root ("make network namespaces").
func RequiresRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root to "+why+" (run the tests as root)")
	}
}

// RequiresBusybox stops a test where there is no static busybox at Busybox.
func RequiresBusybox(t testing.TB) {
	t.Helper()
	if m := busyboxMissing(); m != "" {
		Missing(t, m)
	}
}

// RequiresCommands stops a test where one of the commands is not in PATH;
// pkg is the Debian package that has them ("iproute2").
func RequiresCommands(t testing.TB, pkg string, names ...string) {
	t.Helper()
	for _, n := range names {
		if !inPath(n) {
			Missing(t, "needs "+strings.Join(names, " and ")+" (apt-get install "+pkg+")")
		}
	}
}

// GuestDir is where `make` puts the guest image in the checkout at
// repoRoot.
func GuestDir(repoRoot string) string { return filepath.Join(repoRoot, "build", "guest") }

// GuestImage returns the kernel and the initrd of the guest image in dir
// (as GuestDir): the uncompressed vmlinux when there is one (QEMU boots it
// straight through PVH, without decompressing), else the bzImage vmlinuz.
// It does not check that they exist.
func GuestImage(dir string) (kernel, initrd string) {
	kernel = filepath.Join(dir, "vmlinux")
	if !exists(kernel) {
		kernel = filepath.Join(dir, "vmlinuz")
	}
	return kernel, filepath.Join(dir, "initrd.img")
}

// VMMissing says what this host lacks to boot runvirt VMs from the
// checkout at repoRoot (root, bin/runvirt, the guest image, QEMU, busybox
// for the bundles), or "".
func VMMissing(repoRoot string) string {
	runvirt := filepath.Join(repoRoot, "bin", "runvirt")
	_, initrd := GuestImage(GuestDir(repoRoot))
	switch {
	case os.Geteuid() != 0:
		return "not root (run: sudo make integration)"
	case !exists(runvirt):
		return runvirt + " is missing (run: make)"
	case !exists(initrd):
		return "the guest image is missing (run: make)"
	}
	if m := qemuMissing(); m != "" {
		return m
	}
	return busyboxMissing()
}

// RequiresVM stops a test unless VMs can be booted here from the checkout
// at repoRoot (VMMissing).
func RequiresVM(t testing.TB, repoRoot string) {
	t.Helper()
	if m := VMMissing(repoRoot); m != "" {
		Missing(t, m)
	}
}

func qemuMissing() string {
	if !inPath("qemu-system-x86_64") {
		return "qemu-system-x86_64 is not installed (run: make deps)"
	}
	return ""
}

func busyboxMissing() string {
	if !exists(Busybox) {
		return "busybox-static is not installed (run: make deps)"
	}
	return ""
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func inPath(name string) bool { _, err := exec.LookPath(name); return err == nil }
