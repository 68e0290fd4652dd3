package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A hook whose path is not absolute is refused at create, naming the hook,
// and is never looked up in $PATH.
func TestHookPathMustBeAbsolute(t *testing.T) {
	bin := t.TempDir()
	ran := filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(filepath.Join(bin, "myhook"), []byte("#!/bin/sh\ntouch "+ran+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")

	bundle := t.TempDir()
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	config := `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["true"],"cwd":"/"},"linux":{},
		"hooks":{"createRuntime":[{"path":"/bin/true"},{"path":"myhook"}]}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadBundle(bundle)
	if err == nil || !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), `hooks.createRuntime[1]: path "myhook" must be absolute`) {
		t.Errorf("load a bundle with a relative hook: %v", err)
	}
	if err := runHook(specs.Hook{Path: "myhook"}, []byte("{}")); err == nil {
		t.Error("a relative hook ran")
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("a relative hook path was looked up in $PATH and run")
	}
	zero := 0
	if err := checkHooks(&specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: &zero}}}); err == nil ||
		!strings.Contains(err.Error(), "hooks.poststop[0] (/bin/true): timeout must be positive") {
		t.Errorf("a zero timeout: %v", err)
	}
}

// A hook's timeout holds: at the deadline its whole process group is
// killed, and a child that keeps the hook's output pipes open does not
// make runvirt wait.
func TestHookTimeoutIsExact(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	one := 1
	hook := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; sleep 30"}, Timeout: &one}
	start := time.Now()
	err := runHook(hook, []byte("{}"))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timeout after 1s") {
		t.Errorf("hook past its timeout: %v", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("a 1 s timeout took %s", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for t0 := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(child, 0); err != nil || isZombie(child) {
			break
		}
		if time.Since(t0) > time.Second {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("the hook's child %d outlived its timeout", child)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// A hook that exits 0 but leaves a child holding its output is done when
// it exits (within hookWaitDelay), and succeeds.
func TestHookLeavingAChild(t *testing.T) {
	hook := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 5 & exit 0"}}
	start := time.Now()
	if err := runHook(hook, []byte("{}")); err != nil {
		t.Errorf("a hook that exited 0: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("waited %s for the hook's child", took)
	}
}
