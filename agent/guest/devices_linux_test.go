package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/sys/unix"
)

func i64(v int64) *int64 { return &v }

// devCase is one access and the decision a set must give.
type devCase struct {
	typ          byte
	major, minor uint32
	access       string
	allow        bool
}

func TestDevSetDecisions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rules     []specs.LinuxDeviceCgroup
		restricts bool
		cases     []devCase
	}{
		{
			name: "docker's defaults", rules: testutil.DockerDeviceRules(), restricts: true,
			cases: []devCase{
				{'c', 1, 3, "rw", true},    // /dev/null
				{'c', 1, 1, "m", true},     // mknod of anything
				{'c', 1, 1, "r", false},    // but not opening /dev/mem
				{'c', 1, 1, "rw", false},   // nor for writing
				{'c', 240, 0, "rw", false}, // a virtio-serial port
				{'b', 253, 0, "r", false},  // a virtio disk
				{'b', 253, 0, "m", true},
				{'c', 136, 7, "rw", true}, // any pty
				{'c', 5, 2, "rw", true},   // ptmx
				{'c', 10, 229, "rw", false},
			},
		},
		{
			name: "privileged", rules: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
			cases: []devCase{{'c', 1, 1, "rw", true}, {'b', 8, 0, "rwm", true}},
		},
		{
			// runc's own allowed devices still come after the spec's.
			name: "deny all", rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, restricts: true,
			cases: []devCase{{'c', 1, 3, "rw", true}, {'c', 1, 1, "r", false}, {'c', 1, 1, "m", true}},
		},
		{
			name: "allow-list without a deny-all first", restricts: true,
			rules: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(1), Access: "r"}},
			cases: []devCase{{'c', 1, 1, "r", true}, {'c', 1, 1, "w", false}, {'c', 4, 1, "r", false}},
		},
		{
			name: "later rules override earlier ones", restricts: true,
			rules: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				{Allow: true, Type: "c", Major: i64(1), Minor: i64(1), Access: "rwm"},
				{Allow: false, Type: "c", Major: i64(1), Minor: i64(1), Access: "w"},
			},
			cases: []devCase{{'c', 1, 1, "r", true}, {'c', 1, 1, "w", false}, {'c', 1, 1, "rw", false}},
		},
		{
			name: "a reset to allow-all, then a deny", restricts: true,
			rules: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				{Allow: true, Type: "a", Access: "rwm"},
				{Allow: false, Type: "c", Major: i64(4), Access: "rw"},
			},
			cases: []devCase{{'c', 4, 1, "r", false}, {'c', 4, 1, "m", true}, {'c', 1, 1, "rw", true}, {'b', 4, 1, "r", true}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := containerDevSet(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if set.restricts() != tc.restricts {
				t.Errorf("restricts = %v, want %v", set.restricts(), tc.restricts)
			}
			prog := deviceProgram(set)
			for _, c := range tc.cases {
				a, err := parseDevAccess(c.access)
				if err != nil {
					t.Fatal(err)
				}
				if got := set.allows(c.typ, c.major, c.minor, a); got != c.allow {
					t.Errorf("set: %c %d:%d %s allowed = %v, want %v", c.typ, c.major, c.minor, c.access, got, c.allow)
				}
				got, err := runDeviceProgram(prog, c.typ, c.major, c.minor, a)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.allow {
					t.Errorf("program: %c %d:%d %s allowed = %v, want %v", c.typ, c.major, c.minor, c.access, got, c.allow)
				}
			}
		})
	}
}

// The program decides as the set does for every access to a grid of
// devices around the rules' numbers.
func TestDeviceProgramAgreesWithSet(t *testing.T) {
	set, err := containerDevSet(append(testutil.DockerDeviceRules(),
		specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: i64(8), Access: "r"},
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Minor: i64(4), Access: "w"},
	))
	if err != nil {
		t.Fatal(err)
	}
	prog := deviceProgram(set)
	for _, typ := range []byte{'b', 'c'} {
		for _, major := range []uint32{0, 1, 4, 5, 8, 10, 136, 240, 1 << 31} {
			for _, minor := range []uint32{0, 1, 2, 3, 4, 5, 7, 8, 9, 200, 1 << 31} {
				for a := devAccess(1); a <= accAll; a++ {
					want := set.allows(typ, major, minor, a)
					got, err := runDeviceProgram(prog, typ, major, minor, a)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Fatalf("%c %d:%d access %d: program says %v, set %v", typ, major, minor, a, got, want)
					}
				}
			}
		}
	}
}

func TestDevRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		want  string
	}{
		{"empty access", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c"}}, "access is empty"},
		{"bad access", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Access: "rx"}}, "unknown mode"},
		{"bad type", []specs.LinuxDeviceCgroup{{Allow: true, Type: "p", Access: "r"}}, "type \"p\""},
		{"bad major", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(-7), Access: "r"}}, "out of range"},
		{
			// v1 would ignore it silently; runc refuses it.
			"hole in a wildcard", []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				{Allow: true, Type: "c", Major: i64(1), Access: "rw"},
				{Allow: false, Type: "c", Major: i64(1), Minor: i64(1), Access: "r"},
			}, "cannot take access out of the wider rule c 1:* rw",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := containerDevSet(tc.rules)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("containerDevSet = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if set, err := containerDevSet(nil); set != nil || err != nil {
		t.Errorf("containerDevSet(nil) = %v, %v; want no set", set, err)
	}
}

// runDeviceProgram interprets the instructions deviceProgram emits on a
// bpf_cgroup_dev_ctx, as the kernel would run them.
func runDeviceProgram(p []bpfInsn, typ byte, major, minor uint32, access devAccess) (bool, error) {
	devType := uint32(unix.BPF_DEVCG_DEV_CHAR)
	if typ == 'b' {
		devType = unix.BPF_DEVCG_DEV_BLOCK
	}
	ctx := []uint32{uint32(access)<<16 | devType, major, minor}
	var r [11]uint64
	r1IsCtx := true
	for pc, steps := 0, 0; pc < len(p); pc, steps = pc+1, steps+1 {
		if steps > 4096 {
			return false, errors.New("program does not end")
		}
		in := p[pc]
		switch in.code {
		case opLdxW:
			if in.src != 1 || !r1IsCtx || in.off%4 != 0 || int(in.off/4) >= len(ctx) {
				return false, fmt.Errorf("pc %d: load from r%d%+d is no context field", pc, in.src, in.off)
			}
			r[in.dst] = uint64(ctx[in.off/4])
		case opAndK32:
			r[in.dst] = uint64(uint32(r[in.dst]) & uint32(in.imm))
		case opRshK32:
			r[in.dst] = uint64(uint32(r[in.dst]) >> uint32(in.imm))
		case opMovK32:
			r[in.dst] = uint64(uint32(in.imm))
		case opMovX32:
			r[in.dst] = uint64(uint32(r[in.src]))
		case opJneK32:
			if uint32(r[in.dst]) != uint32(in.imm) {
				pc += int(in.off)
			}
		case opJneX32:
			if uint32(r[in.dst]) != uint32(r[in.src]) {
				pc += int(in.off)
			}
		case opExit:
			if r[0] > 1 {
				return false, fmt.Errorf("pc %d: returns %d", pc, r[0])
			}
			return r[0] == 1, nil
		default:
			return false, fmt.Errorf("pc %d: opcode %#x not interpreted", pc, in.code)
		}
		if in.dst == 1 && in.code != opJneK32 && in.code != opJneX32 {
			r1IsCtx = false
		}
	}
	return false, errors.New("program runs off its end")
}

// TestDeviceProgramInKernel loads the program for docker's rules, attaches
// it to a cgroup and checks what a process in that cgroup may open.
func TestDeviceProgramInKernel(t *testing.T) {
	requiresRoot(t)
	root := "/sys/fs/cgroup"
	var st unix.Statfs_t
	if unix.Statfs(root, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		root = "/sys/fs/cgroup/unified"
		if unix.Statfs(root, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			t.Skip("skipping, no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
		}
	}
	dir, err := os.MkdirTemp(root, "runvirt-devtest-")
	if err != nil {
		t.Skipf("skipping, cannot create a cgroup in %s: %v", root, err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	if err := applyDeviceRules(cg, testutil.DockerDeviceRules()); err != nil {
		if errors.Is(err, errNoDeviceBPF) || errors.Is(err, unix.EPERM) {
			t.Skipf("skipping, cannot load cgroup device programs here: %v", err)
		}
		t.Fatal(err)
	}
	// /dev/kmsg (1:11) is outside docker's list, /dev/null (1:3) in it.
	// A node made in a temporary directory is opened, so the test needs no
	// /dev/kmsg; outside the cgroup it must open, or the test proves
	// nothing.
	node := filepath.Join(t.TempDir(), "kmsg")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 11))); err != nil {
		t.Skipf("skipping, cannot mknod here: %v", err)
	}
	script := "echo x > /dev/null && echo null-ok; (: < " + node + ") 2>/dev/null && echo kmsg-opened || echo kmsg-denied"
	if out, err := exec.Command(busybox, "sh", "-c", script).CombinedOutput(); err != nil || !strings.Contains(string(out), "kmsg-opened") {
		t.Skipf("skipping, a 1:11 node does not open here even outside the cgroup: %v: %s", err, out)
	}
	cmd := exec.Command(busybox, "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "null-ok kmsg-denied" {
		t.Errorf("in the cgroup: %q, want null-ok kmsg-denied", out)
	}
}
