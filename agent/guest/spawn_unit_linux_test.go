package guest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/agent"
	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		opts  []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{[]string{"nosuid", "noexec", "nodev"}, unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV, nil, ""},
		{[]string{"rbind", "ro"}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, nil, ""},
		{[]string{"ro", "rw"}, 0, nil, ""},
		{[]string{"nosuid", "strictatime", "mode=755", "size=65536k"}, unix.MS_NOSUID | unix.MS_STRICTATIME, nil, "mode=755,size=65536k"},
		{[]string{"bind", "rslave", "private"}, unix.MS_BIND, []uintptr{unix.MS_SLAVE | unix.MS_REC, unix.MS_PRIVATE}, ""},
		{[]string{"newinstance", "ptmxmode=0666", "tmpcopyup"}, 0, nil, "newinstance,ptmxmode=0666"},
		{[]string{"nosuid", "suid"}, 0, nil, ""},
	}
	for _, tt := range tests {
		o := parseMountOptions(tt.opts)
		if o.flags != tt.flags || !reflect.DeepEqual(o.propagation, tt.prop) || o.data != tt.data {
			t.Errorf("parseMountOptions(%q) = %#x %v %q, want %#x %v %q",
				tt.opts, o.flags, o.propagation, o.data, tt.flags, tt.prop, tt.data)
		}
	}
}

func TestBindDecisions(t *testing.T) {
	if !isBind(specs.Mount{Type: "none", Options: []string{"rbind"}}, parseMountOptions([]string{"rbind"})) {
		t.Error("rbind option not treated as bind")
	}
	if !isBind(specs.Mount{Type: "bind"}, mountOptions{}) {
		t.Error("type bind not treated as bind")
	}
	if needsRemount(unix.MS_BIND | unix.MS_REC) {
		t.Error("plain rbind needs no remount")
	}
	if !needsRemount(unix.MS_BIND | unix.MS_RDONLY) {
		t.Error("ro bind needs a remount")
	}
	spec := &specs.Spec{Mounts: []specs.Mount{{Destination: "/dev", Type: "bind", Source: "/dev"}}}
	if setupDevNeeded(spec) {
		t.Error("devices must not be created over a bound /dev")
	}
	spec.Mounts[0] = specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"}
	if !setupDevNeeded(spec) {
		t.Error("devices must be created in a tmpfs /dev")
	}
}

func TestCapNumber(t *testing.T) {
	for name, want := range map[string]int{
		"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_ADMIN": 21,
		"CAP_AUDIT_WRITE": 29, "CAP_CHECKPOINT_RESTORE": 40, "net_raw": 13,
	} {
		got, err := capNumber(name)
		if err != nil || got != want {
			t.Errorf("capNumber(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := capNumber("CAP_NOPE"); err == nil {
		t.Error("capNumber(CAP_NOPE) succeeded")
	}
}

func TestParseCapabilities(t *testing.T) {
	c := &specs.LinuxCapabilities{
		Bounding:  []string{"CAP_KILL", "CAP_CHECKPOINT_RESTORE"},
		Effective: []string{"CAP_KILL"},
		Ambient:   []string{"CAP_NET_RAW"},
	}
	s, err := parseCapabilities(c, 39) // a kernel that lacks CAP_CHECKPOINT_RESTORE
	if err != nil {
		t.Fatal(err)
	}
	want := capSets{bounding: 1 << 5, effective: 1 << 5, ambient: 1 << 13}
	if s != want {
		t.Errorf("parseCapabilities = %+v, want %+v", s, want)
	}
}

func TestLookPath(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "bin"))
	mustWrite(t, filepath.Join(root, "bin/tool"), 0o755)
	mustWrite(t, filepath.Join(root, "etc-file"), 0o644)
	mustMkdir(t, filepath.Join(root, "usr/bin/dir"))

	if p, err := lookPath(root, "tool", "/usr/bin:/bin"); err != nil || p != "/bin/tool" {
		t.Errorf("lookPath(tool) = %q, %v", p, err)
	}
	if p, err := lookPath(root, "/bin/tool", ""); err != nil || p != "/bin/tool" {
		t.Errorf("lookPath(/bin/tool) = %q, %v", p, err)
	}
	checkExecErr(t, root, "nosuchcmd", "/bin", `exec: "nosuchcmd": executable file not found in $PATH`, exec.ErrNotFound)
	checkExecErr(t, root, "tool", "", `exec: "tool": executable file not found in $PATH`, exec.ErrNotFound)
	checkExecErr(t, root, "/bin/nope", "/bin", `exec: "/bin/nope": stat /bin/nope: no such file or directory`, fs.ErrNotExist)
	// Even root gets EACCES for X_OK on a file without any x bit.
	checkExecErr(t, root, "/etc-file", "", `exec: "/etc-file": permission denied`, fs.ErrPermission)
	checkExecErr(t, root, "/usr/bin/dir", "", `exec: "/usr/bin/dir": is a directory`, unix.EISDIR)
}

func checkExecErr(t *testing.T, root, file, path, msg string, target error) {
	t.Helper()
	_, err := lookPath(root, file, path)
	var ee *ExecError
	if !errors.As(err, &ee) {
		t.Errorf("lookPath(%q) error = %v, want an ExecError", file, err)
		return
	}
	if err.Error() != msg || !errors.Is(err, target) {
		t.Errorf("lookPath(%q) error = %q, want %q (is %v)", file, err, msg, target)
	}
}

func TestMaskAction(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	mustWrite(t, file, 0o644)
	for _, tt := range []struct {
		path string
		want maskKind
	}{
		{dir, maskTmpfs},
		{file, maskDevNull},
		{filepath.Join(dir, "missing"), maskSkip},
	} {
		fi, err := os.Stat(tt.path)
		got, err := maskAction(fi, err)
		if err != nil || got != tt.want {
			t.Errorf("maskAction(%s) = %v, %v; want %v", tt.path, got, err, tt.want)
		}
	}
	if _, err := maskAction(nil, unix.EACCES); err == nil {
		t.Error("maskAction hid a stat error")
	}
}

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "run"))
	mustMkdir(t, filepath.Join(root, "usr/lib"))
	for _, l := range [][2]string{
		{"/run", "var/run"},            // absolute link inside the root
		{"../../..", "usr/lib/escape"}, // relative link trying to escape
		{"/etc/../../..", "abs-escape"},
		{"loop2", "loop1"}, {"loop1", "loop2"},
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, l[1])), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	for in, want := range map[string]string{
		"/var/run/x":          "/run/x",
		"/usr/lib/escape/etc": "/etc",
		"/abs-escape/passwd":  "/passwd",
		"/../../tmp":          "/tmp",
		"/a/./b/../c":         "/a/c",
	} {
		got, err := secureJoin(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("secureJoin(%s) = %q, %v; want %q", in, got, err, filepath.Join(root, want))
		}
	}
	if _, err := secureJoin(root, "/loop1/x"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("secureJoin(loop) error = %v, want ELOOP", err)
	}
}

func TestHomeDirAndEnv(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	data := "root:x:0:0:root:/root:/bin/sh\nbroken\napp:x:1000:1000::/home/app:/bin/sh\n"
	if err := os.WriteFile(passwd, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if h := homeDir(passwd, 1000); h != "/home/app" {
		t.Errorf("homeDir(1000) = %q", h)
	}
	if h := homeDir(passwd, 42); h != "/" {
		t.Errorf("homeDir(42) = %q", h)
	}
	env := []string{"PATH=/a", "X=1", "PATH=/b"}
	if v := envValue(env, "PATH"); v != "/b" {
		t.Errorf("envValue(PATH) = %q, want the last entry", v)
	}
	p := &specs.Process{Env: []string{"HOME=/custom"}}
	if env := processEnv(p); !reflect.DeepEqual(env, []string{"HOME=/custom"}) {
		t.Errorf("processEnv kept HOME? %v", env)
	}
}

func TestInitCloneFlags(t *testing.T) {
	base := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
	}}}
	if f, cg := initCloneFlags(spec); f != base|unix.CLONE_NEWNET || !cg {
		t.Errorf("initCloneFlags(new net, cgroup) = %#x, %v", f, cg)
	}
	spec.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}
	if f, cg := initCloneFlags(spec); f != base || cg {
		t.Errorf("initCloneFlags(net path) = %#x, %v", f, cg)
	}
}

func TestReadReports(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr string
	}{
		{`{"stage":"exec"}` + "\n", ""},
		{"", "container process exited before exec"},
		{`{"stage":"exec"}{"error":"stat /bin/x: no such file or directory","errno":2,"exec_name":"/bin/x"}`,
			`exec: "/bin/x": stat /bin/x: no such file or directory`},
		{`{"error":"mount proc on /proc: operation not permitted","errno":1}`, "mount proc on /proc: operation not permitted"},
	} {
		err := newReportReader(strings.NewReader(tt.in)).untilExec()
		if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("untilExec(%q) = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
	err := newReportReader(strings.NewReader(`{"error":"x","errno":2,"exec_name":"x"}`)).untilExec()
	var ee *ExecError
	if !errors.As(err, &ee) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("exec error lost its type or errno: %#v", err)
	}
}

// TestReadInitReports follows an init's reports across create and start:
// one reader, whose decoder may have read ahead of the ready report.
func TestReadInitReports(t *testing.T) {
	for _, tt := range []struct {
		in                 string
		wantReady, wantRun string // "-": not reached
	}{
		{`{"stage":"ready"}` + "\n" + `{"stage":"exec"}` + "\n", "", ""},
		{"", "container process exited before it was set up", "-"},
		{`{"error":"mount proc on /proc: operation not permitted","errno":1}`, "mount proc on /proc: operation not permitted", "-"},
		{`{"error":"executable file not found in $PATH","exec_name":"nosuchcmd"}`, `exec: "nosuchcmd": executable file not found in $PATH`, "-"},
		{`{"stage":"ready"}`, "", "container process exited before exec"},
		{`{"stage":"ready"}{"stage":"exec"}{"error":"permission denied","errno":13,"exec_name":"/x"}`, "", `exec: "/x": permission denied`},
	} {
		r := newReportReader(strings.NewReader(tt.in))
		_, err := r.untilReady()
		if (err == nil) != (tt.wantReady == "") || (err != nil && err.Error() != tt.wantReady) {
			t.Errorf("untilReady(%q) = %v, want %q", tt.in, err, tt.wantReady)
			continue
		}
		if tt.wantRun == "-" {
			continue
		}
		err = r.untilExec()
		if (err == nil) != (tt.wantRun == "") || (err != nil && err.Error() != tt.wantRun) {
			t.Errorf("untilExec after ready (%q) = %v, want %q", tt.in, err, tt.wantRun)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"", ".", "..", "a/b", "x\x00"} {
		if validateID(id) == nil {
			t.Errorf("validateID(%q) accepted", id)
		}
	}
	if err := validateID("abc-123_x.y"); err != nil {
		t.Error(err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestApplyResources(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"memory.max", "cpu.weight", "cpu.max"} {
		mustWrite(t, filepath.Join(dir, f), 0o644)
	}
	i64 := func(v int64) *int64 { return &v }
	r := &specs.LinuxResources{
		// No memory.swap.max file: swap accounting is off, the limit is skipped.
		Memory: &specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(2 << 20)},
		CPU:    &specs.LinuxCPU{Quota: i64(20000)},
	}
	if err := applyResources(dir, r); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.max": "1048576", "cpu.max": "20000 100000"} {
		if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	r = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}}
	err := applyResources(dir, r)
	if err == nil || !strings.Contains(err.Error(), "pids controller not available") {
		t.Errorf("pids.max without the controller: %v", err)
	}
}

// The guest applies the shared translation (internal/cgroupv2, where its
// cases are) but the cpuset, which numbers the host's CPUs: a host cpuset
// of "5" in a VM with one vCPU would fail the container.
func TestApplyResourcesSkipsCpuset(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cpu.weight", "cpuset.cpus", "cpuset.mems"} {
		mustWrite(t, filepath.Join(dir, f), 0o644)
	}
	shares := uint64(1)
	r := &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares, Cpus: "5", Mems: "1"}}
	if err := applyResources(dir, r); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"cpu.weight": "1", "cpuset.cpus": "x", "cpuset.mems": "x"} {
		if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
}

// A swap limit below the memory limit fails the container, as in runc; the
// guest used to drop the swap limit and apply the memory limit alone.
func TestApplyResourcesRefusesSwapBelowMemory(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"memory.max", "memory.swap.max"} {
		mustWrite(t, filepath.Join(dir, f), 0o644)
	}
	i64 := func(v int64) *int64 { return &v }
	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(2 << 20), Swap: i64(1 << 20)}}
	err := applyResources(dir, r)
	if err == nil || !strings.Contains(err.Error(), "below memory.limit") {
		t.Errorf("swap below memory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "memory.max")); string(b) != "x" {
		t.Errorf("memory.max = %q after a refused spec, want it untouched", b)
	}
}

func TestValidateUserNS(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
	userNS := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.UserNamespace}}
	tests := []struct {
		name string
		l    *specs.Linux
		want string // "" for no error
	}{
		{"no linux", nil, ""},
		{"no user namespace", &specs.Linux{}, ""},
		{"new with maps", &specs.Linux{Namespaces: userNS, UIDMappings: maps, GIDMappings: maps}, ""},
		{"no maps", &specs.Linux{Namespaces: userNS}, "user namespaces enabled, but no user mapping found"},
		{"no gid maps", &specs.Linux{Namespaces: userNS, UIDMappings: maps}, "user namespaces enabled, but no gid mappings found"},
		{"no uid maps", &specs.Linux{Namespaces: userNS, GIDMappings: maps}, "user namespaces enabled, but no uid mappings found"},
		{"maps without namespace", &specs.Linux{GIDMappings: maps},
			"user namespace mappings specified, but user namespace isn't enabled in the config"},
		{"path", &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "/proc/7/ns/user"}}},
			"user namespace /proc/7/ns/user: " + errJoinUserNS.Error()},
	}
	for _, tt := range tests {
		err := validateUserNS(tt.l)
		if (err == nil) != (tt.want == "") || (err != nil && err.Error() != tt.want) {
			t.Errorf("%s: validateUserNS = %v, want %q", tt.name, err, tt.want)
		}
	}
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: userNS}}
	if !newUserNS(spec) || newUserNS(&specs.Spec{}) {
		t.Error("newUserNS wrong")
	}
}

func TestSandboxJoins(t *testing.T) {
	sb := specs.LinuxNamespace{Path: agent.SandboxNamespace}
	with := func(types ...specs.LinuxNamespaceType) *specs.Spec {
		s := &specs.Spec{Linux: &specs.Linux{}}
		for _, typ := range types {
			n := sb
			n.Type = typ
			s.Linux.Namespaces = append(s.Linux.Namespaces, n)
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.MountNamespace})
		return s
	}
	joins, err := sandboxJoins(with(specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace), 42)
	if err != nil || len(joins) != 3 {
		t.Fatalf("joins %+v, %v", joins, err)
	}
	for _, j := range joins {
		if j.pid != 42 {
			t.Errorf("join %+v: want pid 42", j)
		}
	}
	if joins, err := sandboxJoins(with(), 42); err != nil || len(joins) != 0 {
		t.Errorf("no shared namespaces: %+v, %v", joins, err)
	}
	if _, err := sandboxJoins(with(specs.IPCNamespace), 0); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("no sandbox: %v", err)
	}
	if _, err := sandboxJoins(with(specs.MountNamespace), 42); err == nil || !strings.Contains(err.Error(), "cannot be shared") {
		t.Errorf("mount namespace: %v", err)
	}
	s := with(specs.IPCNamespace)
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
	s.Linux.GIDMappings = s.Linux.UIDMappings
	if _, err := sandboxJoins(s, 42); err == nil || !strings.Contains(err.Error(), "user namespace") {
		t.Errorf("user namespace: %v", err)
	}
}
