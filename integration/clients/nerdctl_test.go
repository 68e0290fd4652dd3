package clients

// nerdctl (the current set only: build-clients.sh builds it) on the
// current set's containerd 2, with runvirt picked per container as runc's
// stand-in: `--runtime /path/to/runvirt` makes nerdctl ask for the runc
// shim with BinaryName set to it. Its networks are CNI's (Debian's plugins):
// the default "bridge" network, plumbed by nerdctl's createRuntime hook,
// and -p by the portmap plugin.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runvirt/runvirt/internal/testutil"
)

// nerdctlBin is the directory of the nerdctl build-clients.sh built.
var nerdctlBin string

// requireNerdctl sets up the current set's containerd and finds nerdctl;
// it skips unless the tests drive the current set, which alone has
// nerdctl, and skips or fails as clientSetup.require does without it.
func requireNerdctl(t *testing.T) {
	t.Helper()
	if !clients().current() {
		t.Skip("skipping: nerdctl is in the current client set only (RUNVIRT_CLIENTS=current, after build-clients.sh)")
	}
	requireContainerd(t)
	if nerdctlBin != "" {
		return
	}
	dir, err := builtBinDir("nerdctl")
	if err == nil {
		nerdctlBin = dir
		return
	}
	testutil.Missing(t, err.Error())
}

// nerdctlCommand is nerdctl on the test containerd, in its default
// namespace (where setup-containerd.sh imported the image), with its own
// data root and CNI configs next to that containerd's state.
func nerdctlCommand(args ...string) *exec.Cmd {
	state := filepath.Dir(ctrdSock)
	global := []string{
		"--address", ctrdSock, "--namespace", "default",
		"--data-root", filepath.Join(state, "nerdctl"),
		"--cni-path", "/usr/lib/cni", "--cni-netconfpath", filepath.Join(state, "nerdctl-cni"),
	}
	return exec.Command(filepath.Join(nerdctlBin, "nerdctl"), append(global, args...)...)
}

func nerdctl(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, nerdctlCommand(args...), stdin)
}

// nerdctlRun is `nerdctl run --runtime <runvirt>` plus args.
func nerdctlRun(args ...string) []string {
	return append([]string{"run", "--runtime", ctrdRunvirt()}, args...)
}

// nerdctlContainer registers cleanup for the container that `nerdctl run
// --cidfile FILE --name name` creates and returns the --cidfile to pass. At
// the end it removes the container if the test left it, then fails the
// test if anything of it survived (as ctrdCleanup checks).
func nerdctlContainer(t *testing.T, name string) string {
	cidfile := filepath.Join(t.TempDir(), "cid")
	t.Cleanup(func() {
		if nerdctlCommand("container", "inspect", name).Run() == nil {
			t.Errorf("container %s left behind", name)
			nerdctlCommand("rm", "-f", name).Run()
		}
		b, _ := os.ReadFile(cidfile)
		if id := strings.TrimSpace(string(b)); id != "" {
			if ctrCommand("containers", "info", id).Run() == nil {
				t.Errorf("container %s left in containerd", id)
			}
			ctrdCheckGone(t, id)
		}
	})
	return cidfile
}

// TestNerdctlRun: `nerdctl run --runtime runvirt --rm -i`: stdin, stdout
// and stderr kept apart, the exit status, a guest kernel, nothing left.
func TestNerdctlRun(t *testing.T) {
	requireNerdctl(t)
	name := dkrName("nrun")
	cid := nerdctlContainer(t, name)
	r := nerdctl(t, "piped\n", nerdctlRun("--rm", "-i", "--net", "none", "--cidfile", cid, "--name", name, ctrdImage,
		"sh", "-c", `read x; echo "got $x"; echo to-stderr >&2; cat /proc/sys/kernel/random/boot_id; exit 3`)...)
	if r.code != 3 {
		t.Errorf("exit status %d, want 3; stderr: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "got piped" {
		t.Fatalf("stdout %q, want \"got piped\" and a boot id", r.stdout)
	}
	if lines[1] == hostBootID(t) {
		t.Errorf("the container ran on the host's kernel (boot id %s)", lines[1])
	}
	if !strings.Contains(r.stderr, "to-stderr") || strings.Contains(r.stdout, "to-stderr") {
		t.Errorf("stderr %q / stdout %q: stderr not kept apart", r.stderr, r.stdout)
	}
}

// TestNerdctlRunTTY: `nerdctl run -it`: the workload has a terminal of the
// caller's size, and its exit status comes back.
func TestNerdctlRunTTY(t *testing.T) {
	requireNerdctl(t)
	name := dkrName("ntty")
	cid := nerdctlContainer(t, name)
	out, code := runOnTTY(t, nerdctlCommand(nerdctlRun("--rm", "-it", "--net", "none", "--cidfile", cid, "--name", name, ctrdImage,
		"sh", "-c", `[ -t 0 ] && [ -t 1 ] && echo is-a-tty; sleep 1; stty size; exit 5`)...), 45, 123, nil)
	if code != 5 {
		t.Errorf("exit status %d, want 5", code)
	}
	if !strings.Contains(out, "is-a-tty") {
		t.Errorf("stdin/stdout are not a terminal: %q", out)
	}
	if !strings.Contains(out, "45 123") {
		t.Errorf("window size not propagated (want \"45 123\"): %q", out)
	}
}

// TestNerdctlDetached: `nerdctl run -d -p` on nerdctl's default bridge
// network: the guest has the address CNI gave the container, the host
// reaches the published port and the container's address, `nerdctl exec`
// (with stdin, and -it on a terminal of the caller's size), logs, and
// `rm -f` of the running container leaves nothing.
func TestNerdctlDetached(t *testing.T) {
	requireNerdctl(t)
	name := dkrName("ndet")
	cid := nerdctlContainer(t, name)
	port := 19000 + os.Getpid()%1000
	r := nerdctl(t, "", nerdctlRun("-d", "--cidfile", cid, "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), ctrdImage,
		"sh", "-c", "mkdir -p /www && echo hello-nerdctl > /www/index.html && echo ready && exec httpd -f -p 8080 -h /www")...)
	if r.code != 0 {
		t.Fatalf("nerdctl run -d: exit %d: %s", r.code, r.stderr)
	}
	if !waitFor(30*time.Second, func() bool {
		out, _ := nerdctlCommand("logs", name).CombinedOutput()
		return strings.Contains(string(out), "ready")
	}) {
		out, _ := nerdctlCommand("logs", name).CombinedOutput()
		t.Errorf("nerdctl logs: %q, want ready", out)
	}
	ipOut, err := nerdctlCommand("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).Output()
	ip := strings.TrimSpace(string(ipOut))
	if err != nil || ip == "" {
		t.Fatalf("nerdctl inspect: ip %q, %v", ip, err)
	}
	if addrs := nerdctl(t, "", "exec", name, "ip", "-o", "addr").stdout; !strings.Contains(addrs, "inet "+ip+"/") {
		t.Errorf("the guest lacks the container's address %s:\n%s", ip, addrs)
	}

	// exec without a terminal: stdin, stdout, stderr, exit status. nerdctl
	// itself exits 1 and names the process's status (with runc too).
	r = nerdctl(t, "in\n", "exec", "-i", name, "sh", "-c", `read x; echo "exec got $x"; echo exec-err >&2; exit 7`)
	if r.code != 1 || strings.TrimSpace(r.stdout) != "exec got in" || !strings.Contains(r.stderr, "exec-err") ||
		!strings.Contains(r.stderr, "exec failed with exit code 7") {
		t.Errorf("exec: exit %d stdout %q stderr %q; want 1, \"exec got in\", exec-err, exit code 7", r.code, r.stdout, r.stderr)
	}
	// exec -it: nerdctl sets the size just after the start, hence the sleep.
	out, code := runOnTTY(t, nerdctlCommand("exec", "-it", name, "sh", "-c", `[ -t 0 ] && echo exec-tty; sleep 1; stty size; exit 9`), 30, 100, nil)
	if code != 1 || !strings.Contains(out, "exec-tty") || !strings.Contains(out, "30 100") || !strings.Contains(out, "exit code 9") {
		t.Errorf("exec -it: exit %d, terminal %q; want 1, exec-tty, \"30 100\", exit code 9", code, out)
	}

	// The host reaches the container at its address and through -p.
	hc := http.Client{Timeout: 10 * time.Second}
	for _, u := range []string{"http://" + ip + ":8080/", fmt.Sprintf("http://127.0.0.1:%d/", port)} {
		var body []byte
		var err error
		waitFor(20*time.Second, func() bool {
			var resp *http.Response
			if resp, err = hc.Get(u); err != nil {
				return false
			}
			defer resp.Body.Close()
			body, err = io.ReadAll(resp.Body)
			return err == nil
		})
		if err != nil || string(body) != "hello-nerdctl\n" {
			t.Errorf("GET %s: %q, %v", u, body, err)
		}
	}

	if r := nerdctl(t, "", "rm", "-f", name); r.code != 0 {
		t.Errorf("nerdctl rm -f: exit %d: %s", r.code, r.stderr)
	}
}
