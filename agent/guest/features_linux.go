package guest

import (
	"maps"
	"slices"
)

// MountOptions lists the mount options the agent understands, sorted: the
// ones that are mount(2) flags, propagation changes and the runc extensions
// it accepts. Any other option is passed to the filesystem as data. The
// host's `runvirt features` reports this list.
func MountOptions() []string {
	opts := slices.Collect(maps.Keys(mountFlags))
	opts = slices.AppendSeq(opts, maps.Keys(propagationFlags))
	opts = slices.AppendSeq(opts, maps.Keys(ignoredOptions))
	slices.Sort(opts)
	return opts
}

// Capabilities lists the capability names the agent knows, in the kernel's
// numbering order.
func Capabilities() []string {
	return slices.Clone(capNames)
}
