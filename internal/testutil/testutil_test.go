package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// recorder is a testing.TB that records how a check stopped the test;
// as testing's, its Skipf and Fatalf end the goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, a ...any) {
	r.skipped = fmt.Sprintf(format, a...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.failed = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// stop runs check with a recorder on a goroutine of its own, as a test.
func stop(check func(testing.TB)) recorder {
	var r recorder
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(&r)
	}()
	<-done
	return r
}

// A missing prerequisite skips, and fails the test where CI asks for the
// integration tests (a skip there would pass CI with the test not run).
func TestMissingSkipsOrFails(t *testing.T) {
	t.Setenv(RequireEnv, "")
	missing := func(t testing.TB) { Missing(t, "qemu is missing (run: make deps)") }
	r := stop(missing)
	if r.skipped != "skipping: qemu is missing (run: make deps)" || r.failed != "" {
		t.Errorf("without %s: skipped %q, failed %q; want a skip", RequireEnv, r.skipped, r.failed)
	}
	t.Setenv(RequireEnv, "1")
	r = stop(missing)
	if r.failed != "integration prerequisite missing: qemu is missing (run: make deps)" || r.skipped != "" {
		t.Errorf("with %s=1: skipped %q, failed %q; want a failure", RequireEnv, r.skipped, r.failed)
	}
}

// The uncompressed kernel is preferred; the bzImage is the fallback.
func TestGuestImage(t *testing.T) {
	dir := t.TempDir()
	if k, i := GuestImage(dir); k != filepath.Join(dir, "vmlinuz") || i != filepath.Join(dir, "initrd.img") {
		t.Errorf("without vmlinux: %s %s", k, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "vmlinux"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if k, _ := GuestImage(dir); k != filepath.Join(dir, "vmlinux") {
		t.Errorf("with vmlinux: %s", k)
	}
}

// Each call is a copy: a test that appends to or edits its rules changes
// no other test's.
func TestDockerDeviceRulesCopies(t *testing.T) {
	a := DockerDeviceRules()
	a[0].Allow = true
	*a[3].Major = 99
	if b := DockerDeviceRules(); b[0].Allow || *b[3].Major != 1 {
		t.Errorf("a change to one copy reached the next: %+v", b[:4])
	}
}
