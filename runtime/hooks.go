package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
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

func runHook(h specs.Hook, state []byte) error {
	ctx := context.Background()
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("hook %s: timeout must be positive, got %d", h.Path, *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	} else {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("hook %s: timeout after %ds", h.Path, *h.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%w, stdout: %s, stderr: %s", err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return nil
}
