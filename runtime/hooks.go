package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Every hook runs on the host: the VM is the container's boundary, and
// what hooks do (network setup by docker's libnetwork-setkey, CNI, device
// plumbing) concerns the host side of it. The state they read on stdin names
// the stand-in's pid, which lives in the container's network namespace.

// hookKind names the hook lists of the spec.
type hookKind string

const (
	hookCreateRuntime   hookKind = "createRuntime"
	hookCreateContainer hookKind = "createContainer"
	hookStartContainer  hookKind = "startContainer"
	hookPrestart        hookKind = "prestart"
	hookPoststart       hookKind = "poststart"
	hookPoststop        hookKind = "poststop"
)

func hooksOf(h *specs.Hooks, kind hookKind) []specs.Hook {
	if h == nil {
		return nil
	}
	switch kind {
	case hookCreateRuntime:
		return h.CreateRuntime
	case hookCreateContainer:
		return h.CreateContainer
	case hookStartContainer:
		return h.StartContainer
	case hookPrestart:
		return h.Prestart //nolint:staticcheck // deprecated, still used by docker 20.10
	case hookPoststart:
		return h.Poststart
	case hookPoststop:
		return h.Poststop
	}
	return nil
}

// runHooks runs the hooks of one kind in order, each with the state on its
// stdin, and stops at the first failure.
func runHooks(h *specs.Hooks, kind hookKind, st *specs.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state for %s hooks: %w", kind, err)
	}
	for i, hook := range hooksOf(h, kind) {
		if err := runHook(hook, b); err != nil {
			return fmt.Errorf("error running %s hook #%d: %w", kind, i, err)
		}
	}
	return nil
}

// checkHooks refuses a hook whose path is not absolute, as runc does at
// create: the spec requires an absolute path, and a relative one would be
// looked up in runvirt's $PATH (or its working directory).
func checkHooks(h *specs.Hooks) error {
	for _, kind := range []hookKind{hookCreateRuntime, hookCreateContainer, hookStartContainer, hookPrestart, hookPoststart, hookPoststop} {
		for i, hook := range hooksOf(h, kind) {
			if !filepath.IsAbs(hook.Path) {
				return fmt.Errorf("hooks.%s[%d]: path %q must be absolute", kind, i, hook.Path)
			}
			if hook.Timeout != nil && *hook.Timeout <= 0 {
				return fmt.Errorf("hooks.%s[%d] (%s): timeout must be positive, got %d", kind, i, hook.Path, *hook.Timeout)
			}
		}
	}
	return nil
}

// hookWaitDelay is how long a hook's output pipes may stay open after the
// hook exited or its process group was killed at its deadline (a child
// that left the group, or a daemon it started, may hold them); then the
// hook counts as done, by its own exit status.
const hookWaitDelay = 100 * time.Millisecond

// runHook runs one hook in a process group of its own. At its deadline the
// whole group is killed, and runHook returns without waiting for what
// still holds the hook's pipes beyond hookWaitDelay: the timeout holds to
// a fraction of a second.
func runHook(h specs.Hook, state []byte) error {
	if !filepath.IsAbs(h.Path) {
		return fmt.Errorf("hook %s: path must be absolute", h.Path)
	}
	ctx := context.Background()
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("hook %s: timeout must be positive, got %d", h.Path, *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	// The path is absolute: CommandContext looks nothing up.
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = hookWaitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // the hook exited 0; what it left holding its pipes is not it
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("hook %s: timeout after %ds", h.Path, *h.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%w, stdout: %s, stderr: %s", err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return nil
}
