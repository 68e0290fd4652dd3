package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
)

// running loads a container and checks that it is running (or paused).
func running(ctx context.Context, g Globals, id string, log *slog.Logger) (*Container, string, error) {
	c, err := Load(g, id, log)
	if err != nil {
		return nil, "", err
	}
	status := c.Status(ctx)
	if status != StatusRunning && status != StatusPaused {
		return nil, status, fmt.Errorf("container %s is %s: %w", id, status, ErrNotRunning)
	}
	return c, status, nil
}

// Pause freezes every process of a running container (its cgroup in the
// guest); the VM itself keeps running for the pod's other containers.
func Pause(ctx context.Context, g Globals, id string, log *slog.Logger) error {
	c, status, err := running(ctx, g, id, log)
	if err != nil {
		return err
	}
	if status == StatusPaused {
		return fmt.Errorf("container %s is already paused", id)
	}
	return c.client().Pause(ctx, id)
}

// Resume thaws a paused container.
func Resume(ctx context.Context, g Globals, id string, log *slog.Logger) error {
	c, status, err := running(ctx, g, id, log)
	if err != nil {
		return err
	}
	if status != StatusPaused {
		return fmt.Errorf("container %s is not paused", id)
	}
	return c.client().Resume(ctx, id)
}

// UpdateFlags are update's resource flags (unset fields are nil).
type UpdateFlags struct {
	ResourcesFile string // --resources: a JSON LinuxResources file, "-" for stdin
	Memory        *int64
	MemorySwap    *int64
	CPUShares     *uint64
	CPUQuota      *int64
	CPUPeriod     *uint64
	PidsLimit     *int64
}

// Update changes the resource limits of a container inside its VM.
func Update(ctx context.Context, g Globals, id string, f UpdateFlags, stdin io.Reader, log *slog.Logger) error {
	r := &specs.LinuxResources{}
	if f.ResourcesFile != "" {
		var src io.Reader = stdin
		if f.ResourcesFile != "-" {
			fh, err := os.Open(f.ResourcesFile)
			if err != nil {
				return fmt.Errorf("update: %w", err)
			}
			defer fh.Close()
			src = fh
		}
		if err := json.NewDecoder(io.LimitReader(src, agent.MaxFrameSize)).Decode(r); err != nil {
			return fmt.Errorf("update: decode resources: %w", err)
		}
	}
	if f.Memory != nil || f.MemorySwap != nil {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		if f.Memory != nil {
			r.Memory.Limit = f.Memory
		}
		if f.MemorySwap != nil {
			r.Memory.Swap = f.MemorySwap
		}
	}
	if f.CPUShares != nil || f.CPUQuota != nil || f.CPUPeriod != nil {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		if f.CPUShares != nil {
			r.CPU.Shares = f.CPUShares
		}
		if f.CPUQuota != nil {
			r.CPU.Quota = f.CPUQuota
		}
		if f.CPUPeriod != nil {
			r.CPU.Period = f.CPUPeriod
		}
	}
	if f.PidsLimit != nil {
		r.Pids = &specs.LinuxPids{Limit: f.PidsLimit}
	}
	c, err := Load(g, id, log)
	if err != nil {
		return err
	}
	if status := c.Status(ctx); status == StatusStopped {
		return fmt.Errorf("cannot update a stopped container %s", id)
	}
	return c.client().Update(ctx, id, r)
}

// ParseOptionalInt parses a flag value given as a string ("" = unset).
func ParseOptionalInt(name, v string) (*int64, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: not a number", name, v)
	}
	return &n, nil
}
