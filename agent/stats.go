package agent

// Stats is a container's resource usage as the guest's cgroup reports it
// (OpStats). Its shape and JSON names are those of the data of runc's
// `events --stats` (runc's types.Stats), so that runvirt can print what runc
// would and clients that parse runc's events read it unchanged. Only what a
// cgroup v2 guest measures is here: cpu, memory and pids. Values are bytes and
// nanoseconds, as in runc; a limit that is "max" in the cgroup is
// math.MaxUint64 for memory and 0 for pids, again as in runc.
type Stats struct {
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	Pids   Pids   `json:"pids"`
	// OOMKills is the container cgroup's OOM kill count so far (from
	// Response.OOMKills); runc's stats have no such field, so it is not
	// printed: `runvirt events` turns its increase into an "oom" event.
	OOMKills uint64 `json:"-"`
}

// CPU is runc's types.Cpu.
type CPU struct {
	Usage      CPUUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
}

// CPUUsage is runc's types.CpuUsage. cgroup v2 has no per-cpu counters, so
// the percpu lists stay empty, as with runc on v2.
type CPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// Throttling is runc's types.Throttling.
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// Memory is runc's types.Memory. Swap is memory+swap, as cgroup v1 (and so
// runc on v2) reports it.
type Memory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
}

// MemoryEntry is runc's types.MemoryEntry.
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// Pids is runc's types.Pids.
type Pids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}
