package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/runvirt/runvirt/runtime"
)

// buildTestProgram builds the static program in testdata/NAME and returns
// its path. go test puts its own go first in PATH.
func buildTestProgram(t *testing.T, name string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build testdata/%s: no go in PATH: %v", name, err)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/%s: %v\n%s", name, err, b)
	}
	return out
}

// installProgram copies the program at src into rootfs/bin.
func installProgram(t *testing.T, src, rootfs string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", filepath.Base(src)), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// capDacReadSearch is CAP_DAC_READ_SEARCH's bit in /proc/PID/status.
const capDacReadSearch = 2

// Handles reach every inode of a file system, whatever bind mount the
// process came through: a pod member with CAP_DAC_READ_SEARCH and no
// seccomp profile (as docker's --security-opt seccomp=unconfined, or a
// privileged container) that opens the share's root by handle (the
// "shocker" exploit) must not read a sibling's private file. The member's
// init (no_new_privs off) and an exec in the sandbox (no_new_privs on) both
// try. With virtio-fs the handle opens (the guest's FUSE root is always
// node 1), so only the agent's filter stops it; 9p has no handles at all.
func TestPodMemberCannotOpenByHandle(t *testing.T) {
	shocker := buildTestProgram(t, "shocker")
	for _, tc := range []struct {
		name string
		opts []envOpt
		want string // the error shocker must report
	}{
		{"virtio-fs", nil, "open_by_handle_at: operation not permitted"},
		{"9p", []envOpt{with9p}, "name_to_handle_at /: operation not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			writePrivate := func(rootfs, content string) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(rootfs, "root", "private"), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rootfs := filepath.Join(e.bundle, "rootfs")
			installProgram(t, shocker, rootfs)
			writePrivate(rootfs, "pod-secret")
			e.spec.Annotations = map[string]string{runtime.AnnotationCRIType: "sandbox", runtime.AnnotationCRISandbox: "pod"}
			e.spec.Process.Args = []string{"sleep", "600"}
			pid, _, _ := e.create("pod")
			e.mustRun("start", "pod")
			ann := map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "pod"}

			// A running member whose private file the sandbox goes for.
			app := e.podMember("app", pid, ann, "sleep", "600")
			writePrivate(filepath.Join(app, "rootfs"), "app-secret")
			e.createBundle("app", app)
			e.mustRun("start", "app")

			// The member's init goes for the sandbox's file.
			sh := e.podMember("shock", pid, ann, "shocker", "/", "pod/rootfs/root/private")
			installProgram(t, shocker, filepath.Join(sh, "rootfs"))
			s := readSpec(t, sh)
			s.Process.NoNewPrivileges = false
			c := s.Process.Capabilities
			c.Bounding = append(c.Bounding, "CAP_DAC_READ_SEARCH")
			c.Effective = append(c.Effective, "CAP_DAC_READ_SEARCH")
			c.Permitted = append(c.Permitted, "CAP_DAC_READ_SEARCH")
			writeSpecTo(t, sh, s)
			r := e.run("", "run", "--bundle", sh, "shock")
			checkShocker(t, "member init", r, tc.want, "pod-secret")

			// An exec in the sandbox goes for the member's file.
			r = e.run("", "exec", "--cap", "CAP_DAC_READ_SEARCH", "pod", "shocker", "/", "app/rootfs/root/private")
			checkShocker(t, "sandbox exec", r, tc.want, "app-secret")

			e.mustRun("delete", "--force", "app")
			e.mustRun("delete", "--force", "pod")
		})
	}
}

// checkShocker fails unless shocker, run as who with CAP_DAC_READ_SEARCH,
// failed with want and did not read secret.
func checkShocker(t *testing.T, who string, r result, want, secret string) {
	t.Helper()
	if !hasCap(r.stdout, capDacReadSearch) {
		// Without the capability the kernel refuses handles by itself.
		t.Errorf("%s: CAP_DAC_READ_SEARCH not in effect, nothing is shown: %q", who, r.stdout)
	}
	if strings.Contains(r.stdout, secret) {
		t.Errorf("%s read another container's private file by handle: %q", who, r.stdout)
		return
	}
	if r.code == 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("%s: exit %d, output %q, want a failure with %q", who, r.code, r.stdout, want)
	}
}

// hasCap reports whether the CapEff line in status output has bit c.
func hasCap(status string, c uint) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}
