package runtime

import "errors"

// Checkpoint and restore (CRIU) would have to capture the whole VM, not a
// process tree on the host, so runvirt refuses them with a reason rather than
// failing somewhere inside CRIU.
var (
	ErrCheckpointUnsupported = errors.New("checkpoint is not supported by runvirt: a container's state lives inside its VM")
	ErrRestoreUnsupported    = errors.New("restore is not supported by runvirt: a container's state lives inside its VM")
)
