package runtime

import "runtime/debug"

// helperMemoryLimit is the Go memory limit of the host processes that live
// as long as a sandbox or a container process (the monitor, the stand-ins).
// Idle, each holds about 10 MiB of RSS; what the guest can make them hold is bounded
// by the protocol (yamux windows of 256 KiB per stream, agent frames of
// at most agent.MaxFrameSize, no goroutine per guest frame: guestConn).
// The limit is Go's soft one: past it the garbage collector runs as often
// as it must, so garbage cannot pile up, but live memory is not refused.
// The hard cap is the monitor's and virtiofsd's memory cgroup
// (helpercgroup.go); the stand-ins have none.
const helperMemoryLimit = 64 << 20

// LimitHelperMemory sets the memory limit of a long-lived helper process.
func LimitHelperMemory() {
	debug.SetMemoryLimit(helperMemoryLimit)
}
