package guest

// Device rules (linux.resources.devices) in the guest. cgroup v2 has no
// devices.allow: the kernel asks a BPF_PROG_TYPE_CGROUP_DEVICE program
// attached to the cgroup whether each open and mknod of a device node may
// go ahead. As runc does, the spec's rules are first folded into the set a
// cgroup v1 devices controller would hold (a default, allow or deny, and
// exceptions to it), with runc's own allowed devices after the spec's; the
// program then checks the exceptions and returns the default. The program is
// a dozen instructions per exception, written here with the raw bpf(2)
// syscall: the agent stays static and free of a BPF library.
//
// A spec without device rules gets no program (every device, as before), and
// so does a set that allows everything (docker's --privileged). A kernel
// without BPF (CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF) fails only a container
// whose rules restrict something: running it unrestricted would be a silent
// hole.

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// devAccess is a set of device accesses, in the kernel's BPF_DEVCG_ACC_*
// bits, so that the program compares it with the request as it is.
type devAccess uint32

const (
	accMknod devAccess = unix.BPF_DEVCG_ACC_MKNOD
	accRead  devAccess = unix.BPF_DEVCG_ACC_READ
	accWrite devAccess = unix.BPF_DEVCG_ACC_WRITE
	accAll             = accMknod | accRead | accWrite
)

// parseDevAccess reads an OCI access string ("rwm" or any part of it).
func parseDevAccess(s string) (devAccess, error) {
	if s == "" {
		return 0, errors.New("access is empty")
	}
	var a devAccess
	for _, c := range s {
		switch c {
		case 'r':
			a |= accRead
		case 'w':
			a |= accWrite
		case 'm':
			a |= accMknod
		default:
			return 0, fmt.Errorf("access %q: unknown mode %q (want r, w, m)", s, c)
		}
	}
	return a, nil
}

// wildcard is a major or minor that matches every number.
const wildcard = -1

// devMatch is what a rule matches: a type ('a' all, 'b' block, 'c' char)
// and major:minor, each possibly wildcard.
type devMatch struct {
	typ          byte
	major, minor int64
}

// devRule is one rule of the spec, parsed.
type devRule struct {
	match  devMatch
	access devAccess
	allow  bool
}

// runcAllowedDevices are the rules runc appends to every container's own
// (libcontainer/specconv's AllowedDevices): clients count on them, so a
// container here may use what it may use under runc. mknod of any device is
// among them; opening what was made is not.
var runcAllowedDevices = []devRule{
	{devMatch{'c', wildcard, wildcard}, accMknod, true},
	{devMatch{'b', wildcard, wildcard}, accMknod, true},
	{devMatch{'c', 1, 3}, accAll, true},          // /dev/null
	{devMatch{'c', 1, 8}, accAll, true},          // /dev/random
	{devMatch{'c', 1, 7}, accAll, true},          // /dev/full
	{devMatch{'c', 5, 0}, accAll, true},          // /dev/tty
	{devMatch{'c', 1, 5}, accAll, true},          // /dev/zero
	{devMatch{'c', 1, 9}, accAll, true},          // /dev/urandom
	{devMatch{'c', 136, wildcard}, accAll, true}, // /dev/pts/*
	{devMatch{'c', 5, 2}, accAll, true},          // /dev/ptmx
	{devMatch{'c', 10, 200}, accAll, true},       // /dev/net/tun
}

// parseDevRules reads the spec's rules as runc does: no type is 'a', no
// major or minor is a wildcard, an access is required.
func parseDevRules(in []specs.LinuxDeviceCgroup) ([]devRule, error) {
	out := make([]devRule, 0, len(in))
	for i, r := range in {
		m := devMatch{typ: 'a', major: wildcard, minor: wildcard}
		switch r.Type {
		case "", "a":
		case "b", "c":
			m.typ = r.Type[0]
		default:
			return nil, fmt.Errorf("device rule %d: type %q (want a, b or c)", i, r.Type)
		}
		if r.Major != nil {
			m.major = *r.Major
		}
		if r.Minor != nil {
			m.minor = *r.Minor
		}
		if m.major < wildcard || m.major > 0xffffffff || m.minor < wildcard || m.minor > 0xffffffff {
			return nil, fmt.Errorf("device rule %d: device %d:%d out of range", i, m.major, m.minor)
		}
		a, err := parseDevAccess(r.Access)
		if err != nil {
			return nil, fmt.Errorf("device rule %d: %w", i, err)
		}
		out = append(out, devRule{match: m, access: a, allow: r.Allow})
	}
	return out, nil
}

// devSet is what a cgroup v1 devices controller holds: a default and the
// exceptions to it, each with the accesses it grants (or denies).
type devSet struct {
	defaultAllow bool
	except       map[devMatch]devAccess
}

// newDevSet folds rules into a set, as runc's devices emulator does: it
// starts denying everything; a rule of type 'a' resets the set to allow (or
// deny) all; any other rule adds an exception to the default or takes
// accesses out of one, so later rules override earlier ones.
func newDevSet(rules []devRule) (*devSet, error) {
	s := &devSet{except: map[devMatch]devAccess{}}
	for _, r := range rules {
		if err := s.apply(r); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *devSet) apply(r devRule) error {
	if r.match.typ == 'a' {
		*s = devSet{defaultAllow: r.allow, except: map[devMatch]devAccess{}}
		return nil
	}
	if r.allow != s.defaultAllow {
		s.except[r.match] |= r.access
		return nil
	}
	// The rule agrees with the default: it removes accesses from an
	// exception. Like runc (and unlike v1, which ignores it silently), a
	// rule that would punch a hole in a wildcard exception is an error:
	// it cannot be expressed and must not look as if it were applied.
	m := r.match
	for _, w := range []devMatch{
		{m.typ, wildcard, m.minor},
		{m.typ, m.major, wildcard},
		{m.typ, wildcard, wildcard},
	} {
		if w != m && s.except[w]&r.access != 0 {
			return fmt.Errorf("device rule %s: cannot take access out of the wider rule %s", formatDevRule(r.match, r.access), formatDevRule(w, s.except[w]))
		}
	}
	if left := s.except[m] &^ r.access; left != 0 {
		s.except[m] = left
	} else {
		delete(s.except, m)
	}
	return nil
}

// restricts reports whether the set denies anything at all.
func (s *devSet) restricts() bool {
	return !s.defaultAllow || len(s.except) > 0
}

// allows is the set's decision for one access to one device, the way the
// program decides: the first exception that matches the type, the
// major:minor and every access asked for gives the opposite of the default.
// The exceptions all have the same verdict, so their order does not matter.
func (s *devSet) allows(typ byte, major, minor uint32, access devAccess) bool {
	for m, a := range s.except {
		if m.typ == typ && access&^a == 0 &&
			(m.major == wildcard || m.major == int64(major)) &&
			(m.minor == wildcard || m.minor == int64(minor)) {
			return !s.defaultAllow
		}
	}
	return s.defaultAllow
}

func formatDevRule(m devMatch, a devAccess) string {
	num := func(n int64) string {
		if n == wildcard {
			return "*"
		}
		return fmt.Sprint(n)
	}
	acc := ""
	for _, x := range []struct {
		bit devAccess
		c   string
	}{{accRead, "r"}, {accWrite, "w"}, {accMknod, "m"}} {
		if a&x.bit != 0 {
			acc += x.c
		}
	}
	return fmt.Sprintf("%c %s:%s %s", m.typ, num(m.major), num(m.minor), acc)
}

// containerDevSet returns the set of the spec's device rules and runc's
// allowed devices; nil when the spec has no rules (nothing is restricted,
// as before the rules were applied in the guest).
func containerDevSet(rules []specs.LinuxDeviceCgroup) (*devSet, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	parsed, err := parseDevRules(rules)
	if err != nil {
		return nil, err
	}
	return newDevSet(append(parsed, runcAllowedDevices...))
}

// bpfInsn is one eBPF instruction (struct bpf_insn).
type bpfInsn struct {
	code     uint8
	dst, src uint8 // registers 0-10
	off      int16
	imm      int32
}

// Opcodes the device program uses.
const (
	opLdxW   = unix.BPF_LDX | unix.BPF_MEM | unix.BPF_W
	opAndK32 = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	opRshK32 = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
	opMovK32 = unix.BPF_ALU | unix.BPF_MOV | unix.BPF_K
	opMovX32 = unix.BPF_ALU | unix.BPF_MOV | unix.BPF_X
	opJneK32 = bpfJmp32 | unix.BPF_JNE | unix.BPF_K
	opJneX32 = bpfJmp32 | unix.BPF_JNE | unix.BPF_X
	opExit   = unix.BPF_JMP | unix.BPF_EXIT
	// bpfJmp32 compares the low 32 bits, so a u32 device number needs no
	// sign care (BPF_JMP32, kernels from 5.1).
	bpfJmp32 = 0x06
)

// deviceProgram compiles a set into a cgroup device program. The context is
// struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type); u32
// major; u32 minor}. Registers: R2 the type, R3 the access asked for, R4
// the major, R5 the minor; R1 is scratch once read. Each exception is a
// block that jumps to the next one on the first mismatch and returns the
// exception's verdict at its end; the default comes last. Exceptions are
// sorted so that a set always gives the same program.
func deviceProgram(s *devSet) []bpfInsn {
	p := []bpfInsn{
		{code: opLdxW, dst: 2, src: 1, off: 0},
		{code: opAndK32, dst: 2, imm: 0xffff},
		{code: opLdxW, dst: 3, src: 1, off: 0},
		{code: opRshK32, dst: 3, imm: 16},
		{code: opLdxW, dst: 4, src: 1, off: 4},
		{code: opLdxW, dst: 5, src: 1, off: 8},
	}
	verdict := func(allow bool) []bpfInsn {
		v := int32(0)
		if allow {
			v = 1
		}
		return []bpfInsn{{code: opMovK32, dst: 0, imm: v}, {code: opExit}}
	}
	matches := make([]devMatch, 0, len(s.except))
	for m := range s.except {
		matches = append(matches, m)
	}
	slices.SortFunc(matches, func(a, b devMatch) int {
		return cmp.Or(cmp.Compare(a.major, b.major), cmp.Compare(a.minor, b.minor), cmp.Compare(a.typ, b.typ))
	})
	for _, m := range matches {
		typ := int32(unix.BPF_DEVCG_DEV_CHAR)
		if m.typ == 'b' {
			typ = unix.BPF_DEVCG_DEV_BLOCK
		}
		// Each test is a "jump if not equal" to the next block; its offset
		// is filled in once the block's length is known.
		block := []bpfInsn{{code: opJneK32, dst: 2, imm: typ}}
		if a := s.except[m]; a != accAll {
			// Every access asked for must be in the exception's.
			block = append(block,
				bpfInsn{code: opMovX32, dst: 1, src: 3},
				bpfInsn{code: opAndK32, dst: 1, imm: int32(a)},
				bpfInsn{code: opJneX32, dst: 1, src: 3},
			)
		}
		if m.major != wildcard {
			block = append(block, bpfInsn{code: opJneK32, dst: 4, imm: int32(uint32(m.major))})
		}
		if m.minor != wildcard {
			block = append(block, bpfInsn{code: opJneK32, dst: 5, imm: int32(uint32(m.minor))})
		}
		block = append(block, verdict(!s.defaultAllow)...)
		for i := range block {
			if block[i].code == opJneK32 || block[i].code == opJneX32 {
				block[i].off = int16(len(block) - i - 1)
			}
		}
		p = append(p, block...)
	}
	return append(p, verdict(s.defaultAllow)...)
}

// encodeProgram lays the instructions out as the kernel reads them.
func encodeProgram(p []bpfInsn) []byte {
	b := make([]byte, 0, 8*len(p))
	for _, in := range p {
		b = append(b, in.code, in.dst&0xf|in.src<<4)
		b = binary.LittleEndian.AppendUint16(b, uint16(in.off))
		b = binary.LittleEndian.AppendUint32(b, uint32(in.imm))
	}
	return b
}

// bpfProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// expected_attach_type.
type bpfProgLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              unsafe.Pointer
	license            unsafe.Pointer
	logLevel           uint32
	logSize            uint32
	logBuf             unsafe.Pointer
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// bpfProgAttachAttr is the BPF_PROG_ATTACH part of union bpf_attr.
type bpfProgAttachAttr struct {
	targetFd     uint32
	attachBpfFd  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBpfFd uint32
}

func bpfCall(cmd uintptr, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// errNoDeviceBPF: the kernel has no bpf(2) or no cgroup device programs.
var errNoDeviceBPF = errors.New("the guest kernel cannot enforce device rules (it needs CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF)")

// loadDeviceProgram loads p as a cgroup device program and returns its fd.
// A program the verifier refuses is loaded again with its log, so the error
// says why; EINVAL without a log is a kernel that does not know the program
// type.
func loadDeviceProgram(p []bpfInsn) (int, error) {
	code := encodeProgram(p)
	license := []byte("Apache\x00")
	attr := bpfProgLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(p)),
		insns:    unsafe.Pointer(&code[0]),
		license:  unsafe.Pointer(&license[0]),
	}
	copy(attr.progName[:], "runvirt_devices")
	fd, err := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	switch {
	case errors.Is(err, unix.ENOSYS):
		err = fmt.Errorf("%w: %w", errNoDeviceBPF, err)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL):
		log := make([]byte, 64<<10)
		attr.logLevel, attr.logSize, attr.logBuf = 1, uint32(len(log)), unsafe.Pointer(&log[0])
		_, _ = bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		runtime.KeepAlive(log)
		if msg := unix.ByteSliceToString(log); msg != "" {
			err = fmt.Errorf("%w: verifier: %s", err, msg)
		} else if errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w: %w", errNoDeviceBPF, err)
		}
	}
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	if err != nil {
		return -1, fmt.Errorf("load device program: %w", err)
	}
	return int(fd), nil
}

// attachDeviceProgram attaches the program to the cgroup. With
// BPF_F_ALLOW_MULTI, as runc attaches it, a program attached below (a
// container's own nested cgroup) runs as well instead of replacing it: both
// must allow.
func attachDeviceProgram(cgroup *os.File, prog int) error {
	attr := bpfProgAttachAttr{
		targetFd:    uint32(cgroup.Fd()),
		attachBpfFd: uint32(prog),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	_, err := bpfCall(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(cgroup)
	if err != nil {
		return fmt.Errorf("attach device program: %w", err)
	}
	return nil
}

// applyDeviceRules enforces the spec's device rules on the cgroup (open, as
// a directory). The cgroup keeps the program attached until it is removed,
// so the program's fd is closed here.
func applyDeviceRules(cgroup *os.File, rules []specs.LinuxDeviceCgroup) error {
	set, err := containerDevSet(rules)
	if err != nil {
		return fmt.Errorf("device rules: %w", err)
	}
	if set == nil || !set.restricts() {
		return nil
	}
	prog, err := loadDeviceProgram(deviceProgram(set))
	if err != nil {
		return fmt.Errorf("device rules: %w", err)
	}
	defer unix.Close(prog)
	if err := attachDeviceProgram(cgroup, prog); err != nil {
		return fmt.Errorf("device rules: %w", err)
	}
	return nil
}
