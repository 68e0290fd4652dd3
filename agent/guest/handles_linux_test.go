package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestHandlesFilter runs the handles filter on each ABI's syscall numbers:
// open_by_handle_at alone is refused, name_to_handle_at and its
// neighbours pass.
func TestHandlesFilter(t *testing.T) {
	f, err := handlesFilter()
	if err != nil {
		t.Fatal(err)
	}
	if f.flags != unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW {
		t.Errorf("flags %#x, want SPEC_ALLOW only", f.flags)
	}
	raw := make([]bpf.RawInstruction, len(f.prog))
	for i, ins := range f.prog {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble: %v", raw)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	v := &seccompVM{t, vm}
	for _, abi := range []*seccompABI{abiX86_64, abiX32, abiI386} {
		for _, name := range []string{"open_by_handle_at", "name_to_handle_at", "openat", "read", "seccomp"} {
			want := uint32(retAllow)
			if name == "open_by_handle_at" {
				want = retErrno(unix.EPERM)
			}
			if got := v.run(abi.audit, mustNumber(t, abi, name)); got != want {
				t.Errorf("%s %s: %#x, want %#x", abi.arch, name, got, want)
			}
		}
	}
	// open_by_handle_at's x86_64 number is another syscall on i386, and an
	// unknown architecture cannot run in the guest.
	if got := v.run(abiI386.audit, mustNumber(t, abiX86_64, "open_by_handle_at")); got != retAllow {
		t.Errorf("i386 syscall 304: %#x, want allow", got)
	}
	if got := v.run(unix.AUDIT_ARCH_AARCH64, 0); got != retAllow {
		t.Errorf("aarch64: %#x, want allow", got)
	}
}

// handlesHelperEnv makes the test binary a helper that loads the handles
// filter and reports what open_by_handle_at returns.
const handlesHelperEnv = "RUNVIRT_HANDLES_HELPER"

// TestHandlesHelper is not a test: run by TestHandlesKernel with
// handlesHelperEnv set, it tries a handle of the current directory, loads
// the filter (with no_new_privs, as an unprivileged test may) and tries again.
func TestHandlesHelper(t *testing.T) {
	if os.Getenv(handlesHelperEnv) == "" {
		t.Skip("helper process for TestHandlesKernel")
	}
	runtime.LockOSThread()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, ".", 0)
	if err != nil {
		fmt.Println("name_to_handle_at:", err)
		return
	}
	try := func(what string) {
		fd, err := unix.OpenByHandleAt(unix.AT_FDCWD, h, unix.O_RDONLY)
		if err == nil {
			unix.Close(fd)
		}
		var e unix.Errno
		errors.As(err, &e)
		fmt.Printf("%s=%d\n", what, e)
	}
	try("before")
	f, err := handlesFilter()
	if err == nil {
		if err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err == nil {
			err = f.load()
		}
	}
	if err != nil {
		fmt.Println("load:", err)
		return
	}
	try("after")
	_, _, err = unix.NameToHandleAt(unix.AT_FDCWD, ".", 0)
	fmt.Printf("name_to_handle_at=%v\n", err)
}

// TestHandlesKernel loads the filter in the kernel: open_by_handle_at,
// which root could use before, fails with EPERM, name_to_handle_at still
// works.
func TestHandlesKernel(t *testing.T) {
	if os.Getenv(handlesHelperEnv) != "" {
		t.Skip("in the helper")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandlesHelper$")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), handlesHelperEnv+"=1", "GOMAXPROCS=1")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if strings.Contains(out, "name_to_handle_at:") {
		t.Skipf("skipping, the test's directory has no file handles: %s", out)
	}
	before := "before=0\n"
	if os.Geteuid() != 0 {
		before = fmt.Sprintf("before=%d\n", unix.EPERM) // no CAP_DAC_READ_SEARCH
	}
	want := before + fmt.Sprintf("after=%d\n", unix.EPERM) + "name_to_handle_at=<nil>\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("helper said %q, want %q first", out, want)
	}
}

// TestSpawnHandlesFilter: every container process runs under the handles
// filter, on top of the spec's profile or without one, with no_new_privs
// as the spec says: an init with and without no_new_privs and no profile,
// one under docker's profile, and an exec.
func TestSpawnHandlesFilter(t *testing.T) {
	requiresRoot(t)
	root := busyboxRootfs(t)
	const script = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status"
	for _, tc := range []struct {
		nnp     bool
		profile *specs.LinuxSeccomp
		want    string
	}{
		{false, nil, "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n"},
		{true, nil, "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"},
		{false, dockerProfile(), "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t2\n"},
	} {
		spec := testSpec("sh", "-c", script)
		spec.Process.NoNewPrivileges = tc.nnp
		spec.Linux.Seccomp = tc.profile
		r := runInit(t, "handles-init", spec, root)
		if r.stdout != tc.want || r.status.ExitStatus() != 0 {
			t.Errorf("init, no_new_privs %v, profile %v: stdout %q (status %v, stderr %q), want %q",
				tc.nnp, tc.profile != nil, r.stdout, r.status, r.stderr, tc.want)
		}
	}

	spec := testSpec("sh", "-c", "echo ready; exec sleep 1000")
	ip, _ := startReadyInit(t, "handles-exec", spec, root)
	ex := newPipeStdio(t)
	ep, _, err := SpawnExec("handles-exec", ip.Pid, spec, &specs.Process{Args: []string{"sh", "-c", script},
		Env: []string{"PATH=/bin"}, Cwd: "/"}, ex.child)
	ex.closeChild()
	if err != nil {
		reapAny(t)
		t.Fatalf("SpawnExec: %v", err)
	}
	reap(t, ep.Pid)
	ex.wg.Wait()
	if want := "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n"; ex.stdout.String() != want {
		t.Errorf("exec: stdout %q, stderr %q, want %q", ex.stdout.String(), ex.stderr.String(), want)
	}
}
