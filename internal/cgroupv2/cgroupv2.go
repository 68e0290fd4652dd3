// Package cgroupv2 translates a spec's linux.resources into cgroup v2 files,
// once for both sides: the host applies the CPU part to the container's
// cgroup there, the guest agent the rest to the container's own cgroup in
// the VM, and a limit must mean the same on both (two copies had drifted:
// shares of 1 overflowed cpu.weight on the host only).
//
// The rules are runc's v2 manager's (libcontainer/cgroups/fs2 and its
// conversions), so a spec written for runc sets the same limits here:
//
//   - every field that is nil, or 0, is left as the cgroup has it: a new
//     cgroup keeps the kernel's default ("max"), an update keeps the current
//     value. That is why docker sends -1, not 0, to lift a pids limit;
//   - -1 (any negative number) is "max";
//   - the spec's swap is memory+swap (cgroup v1's memsw), v2's
//     memory.swap.max is swap alone: the memory limit is subtracted.
//
// An update is the same translation of the fields it holds.
package cgroupv2

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Write is one cgroup file and the value to write to it.
type Write struct {
	File, Value string
}

// Controller names the controller that provides w.File ("cpu" for
// "cpu.max"): a file that is missing means the controller is.
func (w Write) Controller() string {
	c, _, _ := strings.Cut(w.File, ".")
	return c
}

// The range of cgroup v1's cpu.shares; the kernel clamps a write to it.
const (
	MinShares = 2
	MaxShares = 262144
)

// defaultPeriod is the kernel's CFS period, used when a quota comes
// without one.
const defaultPeriod = 100000

// ClampShares brings CPU shares into the range cgroup v1 accepts, as the
// kernel does for cpu.shares; 0 (unset) stays 0. cpu.weight is computed
// from the clamped value: without it, shares of 1 wrapped around to a
// weight of 70369281052672.
func ClampShares(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	return min(max(shares, MinShares), MaxShares)
}

// Weight maps CPU shares [2, 262144] linearly onto cpu.weight [1, 10000]
// (runc's ConvertCPUSharesToCgroupV2Value up to runc 1.2, and crun's), so
// 1024 shares, the v1 default, become weight 39. Shares out of range are
// clamped first; 0 (unset) is 0. runc and crun moved in 2025 to a curve
// that maps 1024 to 100; this keeps the linear map containers here have had.
func Weight(shares uint64) uint64 {
	shares = ClampShares(shares)
	if shares == 0 {
		return 0
	}
	return 1 + ((shares-MinShares)*9999)/(MaxShares-MinShares)
}

// Writes translates r into cgroup v2 file writes, in a fixed order (runc's:
// pids, memory, cpu, cpuset). Only the fields r holds are written, so an
// update passes the fields it changes. It fails for a swap limit that
// cannot be turned into memory.swap.max, as runc does.
func Writes(r *specs.LinuxResources) ([]Write, error) {
	if r == nil {
		return nil, nil
	}
	var w []Write
	if p := r.Pids; p != nil && p.Limit != nil {
		if v, ok := limit(*p.Limit); ok {
			w = append(w, Write{"pids.max", v})
		}
	}
	if m := r.Memory; m != nil {
		mw, err := memoryWrites(m)
		if err != nil {
			return nil, err
		}
		w = append(w, mw...)
	}
	if c := r.CPU; c != nil {
		w = append(w, cpuWrites(c)...)
	}
	return w, nil
}

// memoryWrites translates memory.limit, .swap and .reservation.
func memoryWrites(m *specs.LinuxMemory) ([]Write, error) {
	mem, swap := value(m.Limit), value(m.Swap)
	var w []Write
	// swap before max, as runc writes them.
	sv, err := swapMax(swap, mem)
	if err != nil {
		return nil, err
	}
	if sv != "" {
		w = append(w, Write{"memory.swap.max", sv})
	}
	if v, ok := limit(mem); ok {
		w = append(w, Write{"memory.max", v})
	}
	if v, ok := limit(value(m.Reservation)); ok {
		w = append(w, Write{"memory.low", v})
	}
	return w, nil
}

// swapMax turns the spec's memory+swap limit into memory.swap.max, ""
// for no write: runc's ConvertMemorySwapToCgroupV2Value.
func swapMax(swap, mem int64) (string, error) {
	switch {
	case mem < 0 && swap == 0:
		// Memory lifted and swap not given: lift both, as v1's
		// memory.memsw.limit_in_bytes follows memory.limit_in_bytes.
		return "max", nil
	case swap < 0:
		return "max", nil
	case swap == 0:
		return "", nil
	case mem < 0:
		// No memory limit: memory+swap is all swap.
		return strconv.FormatInt(swap, 10), nil
	case mem == 0:
		return "", fmt.Errorf("linux.resources.memory.swap %d without a memory limit: swap is memory+swap, set memory.limit too", swap)
	case swap < mem:
		return "", fmt.Errorf("linux.resources.memory.swap %d is below memory.limit %d: swap is memory+swap and must be at least the memory limit", swap, mem)
	}
	return strconv.FormatInt(swap-mem, 10), nil
}

// cpuWrites translates shares, quota and period, cpus and mems.
func cpuWrites(c *specs.LinuxCPU) []Write {
	var w []Write
	if c.Shares != nil && *c.Shares != 0 {
		w = append(w, Write{"cpu.weight", strconv.FormatUint(Weight(*c.Shares), 10)})
	}
	quota, period := value(c.Quota), uint64(0)
	if c.Period != nil {
		period = *c.Period
	}
	if quota != 0 || period != 0 {
		q := "max"
		if quota > 0 {
			q = strconv.FormatInt(quota, 10)
		}
		if period == 0 {
			period = defaultPeriod
		}
		w = append(w, Write{"cpu.max", q + " " + strconv.FormatUint(period, 10)})
	}
	if c.Cpus != "" {
		w = append(w, Write{"cpuset.cpus", c.Cpus})
	}
	if c.Mems != "" {
		w = append(w, Write{"cpuset.mems", c.Mems})
	}
	return w
}

// value is *p, 0 (unset) for nil.
func value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// limit renders a limit for a .max or .low file: 0 is no write (unset),
// a negative number "max".
func limit(v int64) (string, bool) {
	switch {
	case v == 0:
		return "", false
	case v < 0:
		return "max", true
	}
	return strconv.FormatInt(v, 10), true
}
