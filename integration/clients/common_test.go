package clients

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/runvirt/runvirt/internal/testutil"
)

// clientSetup runs a client's setup script (which installs and starts the
// client) once per test binary and keeps the socket path it prints last.
type clientSetup struct {
	script string // below integration/clients
	once   sync.Once
	sock   string
	err    string // why the client could not be set up
}

// require skips (or, with RUNVIRT_REQUIRE_INTEGRATION=1 as in CI, fails)
// unless VMs can be booted here and the client is up; it returns the
// client's socket.
func (s *clientSetup) require(t *testing.T) string {
	t.Helper()
	missing := vmPrerequisiteMissing()
	if missing == "" {
		missing = clients().err
	}
	if missing == "" {
		s.once.Do(func() {
			cmd := exec.Command(filepath.Join(ctrdRepo(), "integration", "clients", s.script))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				s.err = fmt.Sprintf("%s: %v: %s", s.script, err, strings.TrimSpace(stderr.String()))
				return
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			s.sock = lines[len(lines)-1]
		})
		missing = s.err
	}
	if missing == "" {
		return s.sock
	}
	testutil.Missing(t, missing)
	return ""
}

// vmPrerequisiteMissing says what this host lacks to boot runvirt VMs, or "".
func vmPrerequisiteMissing() string { return testutil.VMMissing(ctrdRepo()) }

// cmdResult is what one client invocation did.
type cmdResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// clientTimeout bounds one client command.
const clientTimeout = 2 * time.Minute

// runCmd runs a client command to completion with the given stdin (none if
// "") and logs what it did.
func runCmd(t *testing.T, cmd *exec.Cmd, stdin string) cmdResult {
	t.Helper()
	name := strings.Join(cmd.Args, " ")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(clientTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %s\nstdout: %q\nstderr: %q", name, clientTimeout, out.String(), errb.String())
	}
	r := cmdResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s: exit %d in %s\nstdout: %q\nstderr: %q", name, r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// ttyStep is one step of a terminal session: wait until the terminal shows
// want (if not ""), then resize it (if rows > 0) and type input.
type ttyStep struct {
	want       string
	rows, cols uint16
	input      string
}

// runOnTTY runs a client command on a new pty of size rows x cols through
// the steps, and returns what the terminal showed and the exit status.
func runOnTTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16, steps []ttyStep) (string, int) {
	t.Helper()
	name := strings.Join(cmd.Args, " ")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("%s on a pty: %v", name, err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				close(copied)
				return
			}
		}
	}()
	shown := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(clientTimeout)
	seen := 0 // the part of the output earlier steps consumed
	for i, s := range steps {
		for s.want != "" {
			o := shown()
			if j := strings.Index(o[seen:], s.want); j >= 0 {
				seen += j + len(s.want)
				break
			}
			select {
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("%s: step %d: %q never showed; terminal: %q", name, i, s.want, o)
			case err := <-done:
				time.Sleep(200 * time.Millisecond)
				t.Fatalf("%s: exited (%v) before step %d showed %q; terminal: %q", name, err, i, s.want, shown())
			case <-time.After(50 * time.Millisecond):
			}
		}
		if s.rows > 0 {
			if err := pty.Setsize(ptmx, &pty.Winsize{Rows: s.rows, Cols: s.cols}); err != nil {
				t.Fatalf("resize: %v", err)
			}
		}
		if s.input != "" {
			io.WriteString(ptmx, s.input)
		}
	}
	select {
	case err = <-done:
	case <-deadline:
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %s; terminal: %q", name, clientTimeout, shown())
	}
	// The slave is closed once the command exits: the copy ends with EIO.
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s (tty %dx%d): exit %d\nterminal: %q", name, rows, cols, code, shown())
	return shown(), code
}

// TestMain runs the client tests, then fails the run if dockerd left any
// task or shim in containerd, and stops the daemons the setup scripts
// started.
func TestMain(m *testing.M) {
	code := m.Run()
	if dkrSetup.sock != "" {
		if left := dkrLeftInContainerd(""); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: after the docker tests, left in containerd: %s\n", strings.Join(left, "; "))
			code = 1
		}
	}
	for _, s := range []*clientSetup{dkrSetup, ctrdSetup} {
		if s.sock == "" {
			continue
		}
		cmd := exec.Command(filepath.Join(ctrdRepo(), "integration", "clients", s.script), "--stop")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s --stop: %v: %s\n", s.script, err, out)
			code = 1
		}
	}
	os.Exit(code)
}

// leftInContainerd lists what a client left in containerd: the tasks that
// tasksLs (a `ctr tasks ls -q` of the client's namespace) names and match
// accepts, and the runc shims serving namespace ns with an argument that
// match accepts.
func leftInContainerd(tasksLs *exec.Cmd, ns string, match func(string) bool) []string {
	var left []string
	out, _ := tasksLs.Output()
	for _, t := range strings.Fields(string(out)) {
		if match(t) {
			left = append(left, "task "+t)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		if _, err := strconv.Atoi(en.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") || !slices.Contains(args, ns) {
			continue
		}
		if slices.ContainsFunc(args, match) {
			left = append(left, fmt.Sprintf("shim %s: %s", en.Name(), strings.Join(args, " ")))
		}
	}
	return left
}
