package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// StateVersion is written into every state file; a file of another version
// is refused rather than misread.
const StateVersion = 1

// State is what one container keeps on disk between verbs. Liveness is never
// read from here alone: it is derived from the recorded pids and their start
// times (see ProcessRef).
type State struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Sandbox is the ID of the container whose VM this one runs in (its own
	// ID for a pod's first container).
	Sandbox string     `json:"sandbox"`
	Monitor ProcessRef `json:"monitor"`
	// Status is the last status a verb recorded (created, running, stopped);
	// see Container.Status for the derived one.
	Status string `json:"status"`
	// GuestPid is the workload's pid inside the guest.
	GuestPid int `json:"guest_pid,omitempty"`
	// StandIn is the host process standing in for the container's init:
	// the pid clients get in --pid-file and wait on.
	StandIn ProcessRef `json:"stand_in"`
	// Config is the VM configuration the sandbox was started with.
	Config SandboxConfig `json:"config"`
	// Network is the plumbing between the container's network namespace
	// and the VM's NICs (nil: the VM has none).
	Network *SandboxNetwork `json:"network,omitempty"`
}

// ProcessRef names a host process by pid and start time, so a recycled pid
// is never mistaken for ours.
type ProcessRef struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

// RefOf records pid with its current start time.
func RefOf(pid int) (ProcessRef, error) {
	st, err := processStartTime(pid)
	if err != nil {
		return ProcessRef{}, err
	}
	return ProcessRef{Pid: pid, StartTime: st}, nil
}

// Alive reports whether the recorded process still exists (and is not a
// zombie).
func (r ProcessRef) Alive() bool {
	if r.Pid <= 0 {
		return false
	}
	st, err := processStartTime(r.Pid)
	return err == nil && st == r.StartTime
}

// processStartTime reads field 22 of /proc/PID/stat; zombies count as gone.
func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// writeFileAtomic writes data to path through a temp file, fsync and rename,
// so a reader sees the old or the new content, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// SaveState writes the state file of d.
func SaveState(d Dir, s *State) error {
	s.Version = StateVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(d.State(), b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// LoadState reads the state file of d.
func LoadState(d Dir) (*State, error) {
	b, err := os.ReadFile(d.State())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", d.ID, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode state %s: %w", d.State(), err)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("state %s has version %d, this runvirt reads version %d", d.State(), s.Version, StateVersion)
	}
	return &s, nil
}

// Lock is a held flock on a container's lock file.
type Lock struct{ f *os.File }

// LockDir takes the exclusive lock of d, waiting for other verbs on the same
// container. Verbs on other containers are not affected.
func LockDir(d Dir) (*Lock, error) {
	f, err := os.OpenFile(d.Lock(), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", d.ID, ErrNotExist)
		}
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", d.Lock(), err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
