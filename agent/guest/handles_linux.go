package guest

// Every container process gets a second seccomp filter, whatever its spec
// says (no profile at all included: docker's seccomp=unconfined, a
// privileged container), that makes open_by_handle_at(2) fail with EPERM.
//
// A file handle names an inode of a whole file system, not of the mount it
// was made through: with CAP_DAC_READ_SEARCH a process opens any inode of a
// file system it holds one fd of (the "shocker" exploit against Docker in
// 2014). Under runc that file system is the host's; here every container's
// rootfs and volumes are bind mounts of one virtio-fs file system, the
// sandbox's share, whose root is FUSE node 1 in every guest: by handle, a
// pod member reaches the share's root and every other container of the pod.
// The guest's other file systems with handles (tmpfs, cgroup2's kernfs)
// would likewise let a process climb out of the part it was given. No
// container needs handles to see its own files, so the per-container view
// is made the only one reachable by refusing the call.
//
// The filter is loaded before the spec's own, while the process still has
// CAP_SYS_ADMIN, so no_new_privs stays as the spec says. Seccomp stacks
// filters and the most restrictive verdict wins; for two errnos the newer
// filter's, so a profile that refuses open_by_handle_at with its own errno
// keeps it. The filter asks for no speculative store bypass mitigation
// (SECCOMP_FILTER_FLAG_SPEC_ALLOW): on kernels that tie the mitigation to
// seccomp, an unconfined container would otherwise run slower than before;
// a spec's filter without the flag still turns it on.

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompDenyHandles is the verdict for open_by_handle_at.
const seccompDenyHandles = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)

// handlesFilter returns the filter that refuses open_by_handle_at on every
// ABI of an x86_64 guest (x86_64, x32, i386) and allows everything else.
func handlesFilter() (*seccompFilter, error) {
	p := &bpfProg{}
	deny := p.label()
	sec64, sec32 := p.label(), p.label()
	p.load(seccompDataArch)
	p.jumpIf(bpf.JumpEqual, abiX86_64.audit, sec64, next)
	p.jumpIf(bpf.JumpEqual, abiI386.audit, sec32, next)
	// No other architecture runs in an x86_64 guest.
	p.ret(unix.SECCOMP_RET_ALLOW)
	for _, sec := range []struct {
		label int
		abis  []*seccompABI
	}{{sec64, []*seccompABI{abiX86_64, abiX32}}, {sec32, []*seccompABI{abiI386}}} {
		p.mark(sec.label)
		p.load(seccompDataNr)
		for _, abi := range sec.abis {
			nr, ok := abi.number("open_by_handle_at")
			if !ok {
				return nil, fmt.Errorf("handles filter: %s has no open_by_handle_at", abi.arch)
			}
			p.jumpIf(bpf.JumpEqual, nr, deny, next)
		}
		p.ret(unix.SECCOMP_RET_ALLOW)
	}
	p.mark(deny)
	p.ret(seccompDenyHandles)
	prog, err := p.assemble()
	if err != nil {
		return nil, fmt.Errorf("handles filter: %w", err)
	}
	return &seccompFilter{prog: prog, flags: unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW}, nil
}
