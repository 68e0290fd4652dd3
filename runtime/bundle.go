package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runvirt/runvirt/internal/cgroupv2"
)

// maxIDLength bounds container IDs (containerd, docker and CRI-O use 64 hex
// digits); it also keeps the state directory's socket paths within limits.
const maxIDLength = 64

var idPattern = regexp.MustCompile(`^[\w+\-.]+$`)

// ValidateID checks a container ID as runc does, plus a length limit.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: id cannot be empty", ErrInvalidID)
	case len(id) > maxIDLength:
		return fmt.Errorf("%w: id %.20q... is longer than %d characters", ErrInvalidID, id, maxIDLength)
	case id == "." || id == ".." || !idPattern.MatchString(id):
		return fmt.Errorf("%w: %q (allowed: letters, digits, '_', '+', '-', '.'; not '.' or '..')", ErrInvalidID, id)
	}
	return nil
}

// Bundle is a loaded OCI bundle.
type Bundle struct {
	Dir    string // absolute
	Rootfs string // absolute host path
	Spec   *specs.Spec
}

// LoadBundle reads and checks dir/config.json.
func LoadBundle(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(abs, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: open %s: no such file or directory", ErrBadBundle, filepath.Join(abs, "config.json"))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("%w: config.json: %w", ErrBadBundle, err)
	}
	if err := checkSpec(&spec); err != nil {
		return nil, fmt.Errorf("%w: config.json: %w", ErrBadBundle, err)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(abs, rootfs)
	}
	st, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("%w: rootfs %s: %w", ErrBadBundle, rootfs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: rootfs %s is not a directory", ErrBadBundle, rootfs)
	}
	return &Bundle{Dir: abs, Rootfs: rootfs, Spec: &spec}, nil
}

// checkSpec refuses what runvirt cannot run, naming the field.
func checkSpec(s *specs.Spec) error {
	if s.Version == "" {
		return errors.New("ociVersion is missing")
	}
	if !strings.HasPrefix(s.Version, "1.") {
		return fmt.Errorf("ociVersion %q is not supported (want 1.x)", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("root.path is missing")
	}
	if s.Process == nil {
		return errors.New("process is missing")
	}
	if len(s.Process.Args) == 0 {
		return errors.New("process.args must not be empty")
	}
	if s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd) {
		return fmt.Errorf("process.cwd %q must be an absolute path", s.Process.Cwd)
	}
	if s.Linux == nil {
		return errors.New("linux section is missing: runvirt runs Linux containers only")
	}
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return fmt.Errorf("mounts[%d].destination %q must be an absolute path", i, m.Destination)
		}
	}
	// A time namespace without offsets is the guest's own clocks (docker
	// engine 29 asks for one; the guest kernel has none, and the VM's
	// clocks are the container's already). Offsets would need one.
	if len(s.Linux.TimeOffsets) > 0 {
		return errors.New("linux.timeOffsets: clock offsets are not supported (the guest kernel has no time namespaces)")
	}
	// The guest would refuse these limits only after the VM booted.
	if _, err := cgroupv2.Writes(s.Linux.Resources); err != nil {
		return err
	}
	return checkHooks(s.Hooks)
}
