package guest

// Seccomp without libseccomp: the container's linux.seccomp profile is
// compiled here into a classic BPF program with libseccomp's semantics, as
// runc (through libseccomp) would build it, and loaded with seccomp(2) as
// close to execve as finishProcess can.
//
// The program checks seccomp_data.arch first. The guest kernel is x86_64, so
// the only architectures a process can present are x86_64, x32 (the same
// AUDIT_ARCH_X86_64 token, with __X32_SYSCALL_BIT in the syscall number) and
// i386 (AUDIT_ARCH_I386). As in libseccomp, x86_64 is always filtered;
// SCMP_ARCH_X86 and SCMP_ARCH_X32 add i386 and x32, each with its own syscall
// table (generated from the kernel headers), and a syscall of an architecture
// the profile does not list kills the thread (libseccomp's default "bad arch"
// action, SCMP_ACT_KILL). Other SCMP_ARCH_ values are accepted and, since no process in an
// x86_64 guest can use them, need no code. For i386, libseccomp's handling of
// the multiplexed socketcall(2) and ipc(2) is reproduced: a rule for socket,
// semop and the like also applies to socketcall/ipc with that call number. As
// libseccomp does for 32-bit ABIs, i386 and x32 arguments are compared on
// their low 32 bits only.
//
// Per syscall, an unconditional rule wins over every rule with arguments
// (libseccomp drops the latter); otherwise the rules with arguments are tried
// in profile order and the first whose comparisons all hold gives the action.
// A rule with several comparisons on the same argument is split into one rule
// per comparison, as runc does (libseccomp refuses such a rule). Rules whose
// action is the default one are left out, as runc does. Like runc, syscall
// numbers above the highest one the profile names for a listed architecture
// get ENOSYS instead of a denying default action, so that a libc can fall
// back from syscalls newer than the profile.
//
// Dispatch is a binary search on the syscall number down to leaves of a few
// equality tests; rules with arguments are placed after the tree. Every
// conditional jump is short by construction (classic BPF jumps at most 255
// instructions); long distances use unconditional jumps.

//go:generate go run ./internal/seccompgen -o seccomp_syscalls_linux.go

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// syscallNumber is one entry of a generated syscall table.
type syscallNumber struct {
	name string
	nr   uint32
}

const (
	// x32SyscallBit marks x32 syscall numbers (__X32_SYSCALL_BIT).
	x32SyscallBit = 0x40000000
	// bpfMaxInstructions is the kernel's limit on a filter (BPF_MAXINSNS).
	bpfMaxInstructions = 4096
	// seccompLeafSize is the most syscalls a leaf of the dispatch tree
	// tests one after the other.
	seccompLeafSize = 8
	// seccompBadArch is libseccomp's default action for a syscall of an
	// architecture the filter does not know: SCMP_ACT_KILL.
	seccompBadArch = unix.SECCOMP_RET_KILL_THREAD
	// seccompENOSYS answers syscalls newer than the profile.
	seccompENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	// seccompFlagTsync is SECCOMP_FILTER_FLAG_TSYNC, which the spec has no
	// constant for.
	seccompFlagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"
)

// Offsets in struct seccomp_data. Arguments are 64-bit little-endian: the
// low half comes first.
const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16
)

func argLow(i uint) uint32  { return seccompDataArgs + 8*uint32(i) }
func argHigh(i uint) uint32 { return argLow(i) + 4 }

// errSeccompNotify is returned for a profile that needs a seccomp agent.
var errSeccompNotify = errors.New("seccomp notify is not supported")

// seccompABI is a syscall ABI the filter tells apart.
type seccompABI struct {
	arch  specs.Arch
	audit uint32          // seccomp_data.arch
	table []syscallNumber // sorted by name
	nrBit uint32          // added to the table's numbers: x32's __X32_SYSCALL_BIT
	// args32: only the low 32 bits of arguments are compared, with the
	// rule's values truncated, as libseccomp does for 32-bit ABIs.
	args32 bool
	// muxed: socket and SysV IPC calls also go through socketcall(2) and
	// ipc(2) (i386).
	muxed bool
}

var (
	abiX86_64 = &seccompABI{arch: specs.ArchX86_64, audit: unix.AUDIT_ARCH_X86_64, table: syscallsX86_64}
	abiX32    = &seccompABI{arch: specs.ArchX32, audit: unix.AUDIT_ARCH_X86_64, table: syscallsX32,
		nrBit: x32SyscallBit, args32: true}
	abiI386 = &seccompABI{arch: specs.ArchX86, audit: unix.AUDIT_ARCH_I386, table: syscallsI386,
		args32: true, muxed: true}
)

// number returns the syscall number of name on a, false if a has no such
// syscall.
func (a *seccompABI) number(name string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(a.table, name, func(e syscallNumber, n string) int {
		return strings.Compare(e.name, n)
	})
	if !ok {
		return 0, false
	}
	return a.table[i].nr | a.nrBit, true
}

// foreignArchs are the architectures of the spec that an x86_64 guest never
// runs: a profile may list them, they need no code.
var foreignArchs = []specs.Arch{
	specs.ArchARM, specs.ArchAARCH64, specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32,
	specs.ArchMIPSEL, specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
	specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64,
	specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K, specs.ArchSH, specs.ArchSHEB,
}

// socketCalls and ipcCalls are the call numbers of socketcall(2) and ipc(2)
// (<linux/net.h>, <linux/ipc.h>).
var (
	socketCalls = map[string]uint32{
		"socket": 1, "bind": 2, "connect": 3, "listen": 4, "accept": 5, "getsockname": 6,
		"getpeername": 7, "socketpair": 8, "send": 9, "recv": 10, "sendto": 11, "recvfrom": 12,
		"shutdown": 13, "setsockopt": 14, "getsockopt": 15, "sendmsg": 16, "recvmsg": 17,
		"accept4": 18, "recvmmsg": 19, "sendmmsg": 20,
	}
	ipcCalls = map[string]uint32{
		"semop": 1, "semget": 2, "semctl": 3, "semtimedop": 4, "msgsnd": 11, "msgrcv": 12,
		"msgget": 13, "msgctl": 14, "shmat": 21, "shmdt": 22, "shmget": 23, "shmctl": 24,
	}
)

// SeccompActions lists the seccomp actions the agent applies. It does not
// run seccomp agents, so SCMP_ACT_NOTIFY is missing.
func SeccompActions() []string {
	return []string{
		string(specs.ActAllow), string(specs.ActErrno), string(specs.ActKill), string(specs.ActKillProcess),
		string(specs.ActKillThread), string(specs.ActLog), string(specs.ActTrace), string(specs.ActTrap),
	}
}

// SeccompOperators lists the argument comparisons the agent applies: all of
// the spec's.
func SeccompOperators() []string {
	return []string{
		string(specs.OpEqualTo), string(specs.OpGreaterEqual), string(specs.OpGreaterThan),
		string(specs.OpLessEqual), string(specs.OpLessThan), string(specs.OpMaskedEqual),
		string(specs.OpNotEqual),
	}
}

// SeccompArchs lists the architectures a profile may name: the guest's
// x86_64, x32 and i386, and the foreign ones that need no code.
func SeccompArchs() []string {
	archs := []string{string(specs.ArchX86), string(specs.ArchX86_64), string(specs.ArchX32)}
	for _, a := range foreignArchs {
		archs = append(archs, string(a))
	}
	return archs
}

// SeccompFlags lists the filter flags the agent accepts. TSYNC is a no-op:
// the filter is loaded by the thread that execs, and execve ends the others.
func SeccompFlags() []string {
	return []string{
		string(seccompFlagTsync), string(specs.LinuxSeccompFlagLog), string(specs.LinuxSeccompFlagSpecAllow),
	}
}

// seccompFilter is a compiled profile, ready for seccomp(2).
type seccompFilter struct {
	prog  []unix.SockFilter
	flags uintptr
}

// load installs the filter on the calling thread, which must be the one that
// calls execve, and must have no_new_privs set or CAP_SYS_ADMIN.
func (f *seccompFilter) load() error {
	fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(f.prog)
	if e != 0 {
		return fmt.Errorf("load seccomp filter: %w", e)
	}
	return nil
}

// seccompCond is one argument comparison, adjusted to an ABI.
type seccompCond struct {
	arg   uint
	op    specs.LinuxSeccompOperator
	value uint64 // for MASKED_EQ, already masked
	mask  uint64 // MASKED_EQ only
}

// seccompRule is one rule for a syscall: its action applies when all of its
// comparisons hold (always, without any).
type seccompRule struct {
	action uint32
	conds  []seccompCond
}

// seccompCompiler collects the rules of a profile per ABI.
type seccompCompiler struct {
	def    uint32               // the default action
	abis   []*seccompABI        // filtered ABIs: x86_64 first
	listed map[*seccompABI]bool // named in architectures
	rules  map[*seccompABI]map[uint32][]seccompRule
	maxNr  map[*seccompABI]uint32 // highest syscall number named, per ABI
	enosys bool                   // newer syscalls get ENOSYS
}

// compileSeccomp turns a profile into a filter. Errors name the offending
// part of the profile.
func compileSeccomp(s *specs.LinuxSeccomp) (*seccompFilter, error) {
	if s.ListenerPath != "" || s.ListenerMetadata != "" {
		return nil, errSeccompNotify
	}
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	flags, err := seccompFilterFlags(s.Flags)
	if err != nil {
		return nil, err
	}
	c := &seccompCompiler{
		def:    def,
		abis:   []*seccompABI{abiX86_64},
		listed: map[*seccompABI]bool{},
		rules:  map[*seccompABI]map[uint32][]seccompRule{},
		maxNr:  map[*seccompABI]uint32{},
	}
	for _, arch := range s.Architectures {
		if err := c.addArch(arch); err != nil {
			return nil, err
		}
	}
	// As runc: no ENOSYS for a permissive default, nor where the default
	// already is ENOSYS.
	switch def & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_LOG, unix.SECCOMP_RET_TRACE:
	default:
		c.enosys = def != seccompENOSYS
	}
	for _, sc := range s.Syscalls {
		if err := c.addSyscalls(sc); err != nil {
			return nil, fmt.Errorf("syscalls %s: %w", strings.Join(sc.Names, ","), err)
		}
	}
	prog, err := c.program()
	if err != nil {
		return nil, err
	}
	return &seccompFilter{prog: prog, flags: flags}, nil
}

// seccompAction returns the filter's return value for an action.
// errnoRet applies to ERRNO and, as in runc, TRACE; it defaults to EPERM.
func seccompAction(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	errno := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d out of range", *errnoRet)
		}
		errno = uint32(*errnoRet)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | errno, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | errno, nil
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, errSeccompNotify
	}
	return 0, fmt.Errorf("unknown seccomp action %q", a)
}

// seccompFilterFlags returns the seccomp(2) flags of a profile.
func seccompFilterFlags(flags []specs.LinuxSeccompFlag) (uintptr, error) {
	var f uintptr
	for _, flag := range flags {
		switch flag {
		case seccompFlagTsync:
			// See SeccompFlags.
		case specs.LinuxSeccompFlagLog:
			f |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			f |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			return 0, fmt.Errorf("seccomp flag %q is not supported", flag)
		}
	}
	return f, nil
}

// addArch adds an architecture of the profile to the filter.
func (c *seccompCompiler) addArch(arch specs.Arch) error {
	var abi *seccompABI
	switch arch {
	case specs.ArchX86_64:
		abi = abiX86_64
	case specs.ArchX32:
		abi = abiX32
	case specs.ArchX86:
		abi = abiI386
	default:
		if slices.Contains(foreignArchs, arch) {
			return nil
		}
		return fmt.Errorf("unknown seccomp architecture %q", arch)
	}
	c.listed[abi] = true
	if !slices.Contains(c.abis, abi) {
		c.abis = append(c.abis, abi)
	}
	return nil
}

// addSyscalls adds the rules of one syscalls entry of the profile. Names
// that an ABI does not have are skipped, as libseccomp does.
func (c *seccompCompiler) addSyscalls(sc specs.LinuxSyscall) error {
	action, err := seccompAction(sc.Action, sc.ErrnoRet)
	if err != nil {
		return err
	}
	alts, err := seccompAlternatives(sc.Args)
	if err != nil {
		return err
	}
	for _, name := range sc.Names {
		if name == "" {
			return errors.New("empty syscall name")
		}
		for _, abi := range c.abis {
			nr, ok := abi.number(name)
			if ok {
				c.maxNr[abi] = max(c.maxNr[abi], nr)
			}
			if action == c.def {
				continue
			}
			for _, args := range alts {
				conds := abi.conds(args)
				if ok {
					c.add(abi, nr, seccompRule{action, conds})
				}
				if !abi.muxed {
					continue
				}
				// libseccomp: the multiplexer's first argument becomes
				// the call number, the other comparisons stay.
				if call, ok := socketCalls[name]; ok {
					c.addMuxed(abi, "socketcall", call, action, conds)
				} else if call, ok := ipcCalls[name]; ok {
					c.addMuxed(abi, "ipc", call, action, conds)
				}
			}
		}
	}
	return nil
}

// addMuxed adds a rule for call of a multiplexer syscall.
func (c *seccompCompiler) addMuxed(abi *seccompABI, mux string, call, action uint32, conds []seccompCond) {
	nr, ok := abi.number(mux)
	if !ok {
		return
	}
	muxed := []seccompCond{{arg: 0, op: specs.OpEqualTo, value: uint64(call)}}
	for _, cond := range conds {
		if cond.arg != 0 {
			muxed = append(muxed, cond)
		}
	}
	c.add(abi, nr, seccompRule{action, muxed})
}

func (c *seccompCompiler) add(abi *seccompABI, nr uint32, r seccompRule) {
	if c.rules[abi] == nil {
		c.rules[abi] = map[uint32][]seccompRule{}
	}
	c.rules[abi][nr] = append(c.rules[abi][nr], r)
}

// seccompAlternatives validates the comparisons of a rule and returns the
// rules they make: one, or, when an argument is compared more than once,
// one per comparison (runc's behaviour).
func seccompAlternatives(args []specs.LinuxSeccompArg) ([][]specs.LinuxSeccompArg, error) {
	var seen [6]bool
	split := false
	for _, a := range args {
		if a.Index >= uint(len(seen)) {
			return nil, fmt.Errorf("argument index %d out of range (0-5)", a.Index)
		}
		switch a.Op {
		case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
			specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		default:
			return nil, fmt.Errorf("unknown seccomp operator %q", a.Op)
		}
		split = split || seen[a.Index]
		seen[a.Index] = true
	}
	if !split {
		return [][]specs.LinuxSeccompArg{args}, nil
	}
	alts := make([][]specs.LinuxSeccompArg, len(args))
	for i, a := range args {
		alts[i] = []specs.LinuxSeccompArg{a}
	}
	return alts, nil
}

// conds adjusts comparisons to a: masked values, 32-bit truncation, and no
// MASKED_EQ with an empty mask, which always holds (libseccomp drops it).
func (a *seccompABI) conds(args []specs.LinuxSeccompArg) []seccompCond {
	width := ^uint64(0)
	if a.args32 {
		width = 0xffffffff
	}
	var conds []seccompCond
	for _, arg := range args {
		c := seccompCond{arg: arg.Index, op: arg.Op, value: arg.Value & width}
		if arg.Op == specs.OpMaskedEqual {
			c.mask = arg.Value & width
			c.value = arg.ValueTwo & c.mask
			if c.mask == 0 {
				continue
			}
		}
		conds = append(conds, c)
	}
	return conds
}

// seccompEntry is one syscall number to dispatch and its rules.
type seccompEntry struct {
	nr    uint32
	rules []seccompRule
	abi   *seccompABI
	body  int // label of the rules' code, for rules with arguments
}

// entries returns the syscalls of the ABIs in abis that have rules, sorted by
// number, each with its effective rules: a lone unconditional rule, or the
// rules with arguments in profile order.
func (c *seccompCompiler) entries(abis []*seccompABI) []*seccompEntry {
	var es []*seccompEntry
	for _, abi := range abis {
		for nr, rules := range c.rules[abi] {
			e := &seccompEntry{nr: nr, rules: rules, abi: abi}
			for _, r := range rules {
				if len(r.conds) == 0 {
					e.rules = []seccompRule{r}
					break
				}
			}
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *seccompEntry) int { return cmp.Compare(a.nr, b.nr) })
	return es
}

// program generates the filter.
func (c *seccompCompiler) program() ([]unix.SockFilter, error) {
	p := &bpfProg{}
	x32 := slices.Contains(c.abis, abiX32)
	i386 := slices.Contains(c.abis, abiI386)

	// Architecture dispatch.
	p.load(seccompDataArch)
	sec64, sec32 := p.label(), p.label()
	p.jumpTo(bpf.JumpEqual, abiX86_64.audit, sec64)
	if i386 {
		p.jumpTo(bpf.JumpEqual, abiI386.audit, sec32)
	}
	p.ret(seccompBadArch)

	// AUDIT_ARCH_X86_64: x86_64 and, when listed, x32.
	p.mark(sec64)
	p.load(seccompDataNr)
	abis64 := []*seccompABI{abiX86_64}
	if x32 {
		abis64 = append(abis64, abiX32)
	}
	c.enosysStub(p, abis64)
	if !x32 {
		// libseccomp: an x32 syscall is of a foreign architecture, except
		// -1, which tracers use to skip a syscall.
		dispatch := p.label()
		p.jumpIf(bpf.JumpGreaterOrEqual, x32SyscallBit, next, dispatch)
		p.jumpIf(bpf.JumpEqual, 0xffffffff, dispatch, next)
		p.ret(seccompBadArch)
		p.mark(dispatch)
	}
	var bodies []*seccompEntry
	bodies = c.tree(p, c.entries(abis64), bodies)
	if i386 {
		p.mark(sec32)
		p.load(seccompDataNr)
		c.enosysStub(p, []*seccompABI{abiI386})
		bodies = c.tree(p, c.entries([]*seccompABI{abiI386}), bodies)
	}
	for _, e := range bodies {
		c.body(p, e)
	}
	return p.assemble()
}

// enosysStub returns ENOSYS for syscall numbers above the highest one the
// profile names, for those of abis that the profile lists (runc's stub). The
// accumulator holds the syscall number, and still does after the stub.
// x86_64 and x32 share a section: bit 30 of the number tells them apart.
func (c *seccompCompiler) enosysStub(p *bpfProg, abis []*seccompABI) {
	if !c.enosys {
		return
	}
	var checks []*seccompABI
	for _, abi := range abis {
		if c.listed[abi] && c.maxNr[abi] > 0 {
			checks = append(checks, abi)
		}
	}
	if len(checks) == 0 {
		return
	}
	cont, enosys := p.label(), p.label()
	for i, abi := range checks {
		nextCheck := cont // where the other ABI of the section goes
		if i < len(checks)-1 {
			nextCheck = p.label()
		}
		switch {
		case abi == abiX86_64:
			p.jumpIf(bpf.JumpBitsSet, x32SyscallBit, nextCheck, next)
		case abi == abiX32 && i == 0:
			p.jumpIf(bpf.JumpBitsSet, x32SyscallBit, next, cont)
		}
		p.jumpIf(bpf.JumpGreaterThan, c.maxNr[abi], enosys, cont)
		if nextCheck != cont {
			p.mark(nextCheck)
		}
	}
	p.mark(enosys)
	p.ret(seccompENOSYS)
	p.mark(cont)
}

// tree dispatches on the syscall number in the accumulator: a binary search
// down to leaves of up to seccompLeafSize equality tests. Unconditional
// rules return from the leaf; entries with argument rules jump to their
// bodies, which are appended to bodies for the caller to place after all
// trees (their code may be long).
func (c *seccompCompiler) tree(p *bpfProg, es []*seccompEntry, bodies []*seccompEntry) []*seccompEntry {
	if len(es) <= seccompLeafSize {
		return c.leaf(p, es, bodies)
	}
	mid := len(es) / 2
	left, right := p.label(), p.label()
	p.jumpIf(bpf.JumpGreaterOrEqual, es[mid].nr, next, left)
	p.jump(right)
	p.mark(left)
	bodies = c.tree(p, es[:mid], bodies)
	p.mark(right)
	return c.tree(p, es[mid:], bodies)
}

// leaf tests each syscall of es in turn. Its targets follow the default
// return: one return per action, and one long jump per body, so that every
// conditional jump stays short.
func (c *seccompCompiler) leaf(p *bpfProg, es []*seccompEntry, bodies []*seccompEntry) []*seccompEntry {
	rets := map[uint32]int{}
	var actions []uint32
	var trampolines []*seccompEntry
	targets := make([]int, len(es))
	for i, e := range es {
		if len(e.rules[0].conds) == 0 {
			act := e.rules[0].action
			if _, ok := rets[act]; !ok {
				rets[act] = p.label()
				actions = append(actions, act)
			}
			targets[i] = rets[act]
			continue
		}
		targets[i] = p.label()
		e.body = p.label()
		trampolines = append(trampolines, e)
	}
	for i, e := range es {
		p.jumpIf(bpf.JumpEqual, e.nr, targets[i], next)
	}
	p.ret(c.def)
	for _, act := range actions {
		p.mark(rets[act])
		p.ret(act)
	}
	for i, e := range es {
		if len(e.rules[0].conds) > 0 {
			p.mark(targets[i])
			p.jump(e.body)
		}
	}
	return append(bodies, trampolines...)
}

// body tries the argument rules of e in order; the first whose comparisons
// all hold returns its action, else the default action applies.
func (c *seccompCompiler) body(p *bpfProg, e *seccompEntry) {
	p.mark(e.body)
	for _, r := range e.rules {
		fail := p.label()
		for _, cond := range r.conds {
			if e.abi.args32 {
				compare32(p, cond, fail)
			} else {
				compare64(p, cond, fail)
			}
		}
		p.ret(r.action)
		p.mark(fail)
	}
	p.ret(c.def)
}

// compare32 falls through when the low 32 bits of the argument satisfy
// cond, and jumps to fail otherwise.
func compare32(p *bpfProg, cond seccompCond, fail int) {
	v := uint32(cond.value)
	p.load(argLow(cond.arg))
	switch cond.op {
	case specs.OpEqualTo:
		p.jumpIf(bpf.JumpEqual, v, next, fail)
	case specs.OpNotEqual:
		p.jumpIf(bpf.JumpEqual, v, fail, next)
	case specs.OpMaskedEqual:
		p.and(uint32(cond.mask))
		p.jumpIf(bpf.JumpEqual, v, next, fail)
	case specs.OpGreaterThan:
		p.jumpIf(bpf.JumpGreaterThan, v, next, fail)
	case specs.OpGreaterEqual:
		p.jumpIf(bpf.JumpGreaterOrEqual, v, next, fail)
	case specs.OpLessThan:
		p.jumpIf(bpf.JumpGreaterOrEqual, v, fail, next)
	case specs.OpLessEqual:
		p.jumpIf(bpf.JumpGreaterThan, v, fail, next)
	}
}

// compare64 falls through when the 64-bit argument satisfies cond, and
// jumps to fail otherwise. The high halves decide unless they are equal.
func compare64(p *bpfProg, cond seccompCond, fail int) {
	hi, lo := uint32(cond.value>>32), uint32(cond.value)
	ok := p.label()
	switch cond.op {
	case specs.OpEqualTo:
		p.load(argHigh(cond.arg))
		p.jumpIf(bpf.JumpEqual, hi, next, fail)
		p.load(argLow(cond.arg))
		p.jumpIf(bpf.JumpEqual, lo, next, fail)
	case specs.OpNotEqual:
		p.load(argHigh(cond.arg))
		p.jumpIf(bpf.JumpEqual, hi, next, ok)
		p.load(argLow(cond.arg))
		p.jumpIf(bpf.JumpEqual, lo, fail, next)
	case specs.OpMaskedEqual:
		// A half with an empty mask always matches.
		if mask := uint32(cond.mask >> 32); mask != 0 {
			p.load(argHigh(cond.arg))
			p.and(mask)
			p.jumpIf(bpf.JumpEqual, hi, next, fail)
		}
		if mask := uint32(cond.mask); mask != 0 {
			p.load(argLow(cond.arg))
			p.and(mask)
			p.jumpIf(bpf.JumpEqual, lo, next, fail)
		}
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		p.load(argHigh(cond.arg))
		p.jumpIf(bpf.JumpGreaterThan, hi, ok, next)
		p.jumpIf(bpf.JumpEqual, hi, next, fail)
		p.load(argLow(cond.arg))
		if cond.op == specs.OpGreaterThan {
			p.jumpIf(bpf.JumpGreaterThan, lo, next, fail)
		} else {
			p.jumpIf(bpf.JumpGreaterOrEqual, lo, next, fail)
		}
	case specs.OpLessThan, specs.OpLessEqual:
		p.load(argHigh(cond.arg))
		p.jumpIf(bpf.JumpGreaterOrEqual, hi, next, ok)
		p.jumpIf(bpf.JumpEqual, hi, next, fail)
		p.load(argLow(cond.arg))
		if cond.op == specs.OpLessThan {
			p.jumpIf(bpf.JumpGreaterOrEqual, lo, fail, next)
		} else {
			p.jumpIf(bpf.JumpGreaterThan, lo, fail, next)
		}
	}
	p.mark(ok)
}

// next as a jump target is the following instruction.
const next = -1

// bpfProg builds a classic BPF program whose jumps go to labels.
type bpfProg struct {
	insns  []bpf.Instruction
	labels []int // instruction index per label; -1 until marked
	jumps  []bpfJump
}

// bpfJump is a jump to resolve: the instruction and its targets.
type bpfJump struct {
	at, t, f int
}

func (p *bpfProg) label() int {
	p.labels = append(p.labels, -1)
	return len(p.labels) - 1
}

// mark places l at the next instruction.
func (p *bpfProg) mark(l int) { p.labels[l] = len(p.insns) }

func (p *bpfProg) load(off uint32) { p.insns = append(p.insns, bpf.LoadAbsolute{Off: off, Size: 4}) }

func (p *bpfProg) and(v uint32) {
	p.insns = append(p.insns, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: v})
}

func (p *bpfProg) ret(v uint32) { p.insns = append(p.insns, bpf.RetConstant{Val: v}) }

// jumpIf tests the accumulator against v and goes to t or f (labels, or
// next). cond must be one that assembles as is (EQ, GT, GE, SET).
func (p *bpfProg) jumpIf(cond bpf.JumpTest, v uint32, t, f int) {
	p.jumps = append(p.jumps, bpfJump{at: len(p.insns), t: t, f: f})
	p.insns = append(p.insns, bpf.JumpIf{Cond: cond, Val: v})
}

// jumpTo goes to l, however far, when the test holds, and falls through
// otherwise.
func (p *bpfProg) jumpTo(cond bpf.JumpTest, v uint32, l int) {
	skip := p.label()
	p.jumpIf(cond, v, next, skip)
	p.jump(l)
	p.mark(skip)
}

// jump goes to l unconditionally.
func (p *bpfProg) jump(l int) {
	p.jumps = append(p.jumps, bpfJump{at: len(p.insns), t: l, f: next})
	p.insns = append(p.insns, bpf.Jump{})
}

// assemble resolves the jumps and encodes the program.
func (p *bpfProg) assemble() ([]unix.SockFilter, error) {
	for _, j := range p.jumps {
		t, err := p.distance(j.at, j.t)
		if err != nil {
			return nil, err
		}
		f, err := p.distance(j.at, j.f)
		if err != nil {
			return nil, err
		}
		switch ins := p.insns[j.at].(type) {
		case bpf.Jump:
			ins.Skip = uint32(t)
			p.insns[j.at] = ins
		case bpf.JumpIf:
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("seccomp program: conditional jump at %d too long (%d, %d)", j.at, t, f)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(f)
			p.insns[j.at] = ins
		}
	}
	if len(p.insns) > bpfMaxInstructions {
		return nil, fmt.Errorf("seccomp program has %d instructions, more than the kernel's %d", len(p.insns), bpfMaxInstructions)
	}
	raw, err := bpf.Assemble(p.insns)
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp program: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
}

// distance is the jump offset from the instruction at to label l.
func (p *bpfProg) distance(at, l int) (int, error) {
	if l == next {
		return 0, nil
	}
	d := p.labels[l] - at - 1
	if p.labels[l] < 0 || d < 0 {
		return 0, fmt.Errorf("seccomp program: bad jump at %d to label %d", at, l)
	}
	return d, nil
}
