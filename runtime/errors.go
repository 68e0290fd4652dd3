// Package runtime is runvirt's host side: bundles, container state on disk,
// the sandbox monitor that owns a VM, and the lifecycle verbs.
package runtime

import "errors"

// Sentinel errors, checked with errors.Is. Their text follows runc's so
// clients that match on it behave the same.
var (
	ErrNotExist    = errors.New("container does not exist")
	ErrExist       = errors.New("container with given ID already exists")
	ErrInvalidID   = errors.New("invalid container id")
	ErrBadBundle   = errors.New("invalid bundle")
	ErrNotRunning  = errors.New("container not running")
	ErrStillActive = errors.New("container still running")
)
