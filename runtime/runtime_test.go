package runtime

import (
	"errors"
	"github.com/runvirt/runvirt/internal/testutil"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "abc-123_x.y+z", strings.Repeat("f", 64)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "a b", strings.Repeat("f", 65), "x\x00"} {
		if err := ValidateID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("%q: want ErrInvalidID, got %v", bad, err)
		}
	}
}

func writeBundle(t *testing.T, config string) string {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	if config != "" {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644)
	}
	return dir
}

const goodConfig = `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`

func TestLoadBundle(t *testing.T) {
	dir := writeBundle(t, goodConfig)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("rootfs %s", b.Rootfs)
	}
}

func TestLoadBundleErrors(t *testing.T) {
	for name, tc := range map[string]struct{ config, want string }{
		"missing config":    {"", "config.json: no such file or directory"},
		"malformed":         {`{"ociVersion":`, "config.json"},
		"no version":        {`{"root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`, "ociVersion is missing"},
		"version 2":         {`{"ociVersion":"2.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`, `ociVersion "2.0.0" is not supported`},
		"no args":           {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":[],"cwd":"/"},"linux":{}}`, "process.args"},
		"relative cwd":      {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"x"},"linux":{}}`, "process.cwd"},
		"no rootfs":         {`{"ociVersion":"1.0.2","root":{"path":"nope"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`, "rootfs"},
		"no linux":          {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`, "linux"},
		"bad mount":         {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{},"mounts":[{"destination":"rel"}]}`, "mounts[0].destination"},
		"time offsets":      {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{"timeOffsets":{"monotonic":{"secs":10}}}}`, "linux.timeOffsets: clock offsets are not supported"},
		"swap below memory": {`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{"resources":{"memory":{"limit":2097152,"swap":1048576}}}}`, "linux.resources.memory.swap 1048576 is below memory.limit 2097152"},
	} {
		_, err := LoadBundle(writeBundle(t, tc.config))
		if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want ErrBadBundle mentioning %q, got %v", name, tc.want, err)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	d := Dir{Root: t.TempDir(), ID: "c1"}
	os.Mkdir(d.Path(), 0o700)
	if _, err := LoadState(d); !errors.Is(err, ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
	st := &State{ID: "c1", Bundle: "/b", Status: "created", Config: SandboxConfig{Machine: "q35"}}
	if err := SaveState(d, st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(d)
	if err != nil || got.ID != "c1" || got.Config.Machine != "q35" || got.Version != StateVersion {
		t.Fatalf("got %+v, %v", got, err)
	}
	// No temp files left beside the state.
	ents, _ := os.ReadDir(d.Path())
	if len(ents) != 1 {
		t.Fatalf("state dir holds %d entries", len(ents))
	}
	os.WriteFile(d.State(), []byte(`{"version":99}`), 0o600)
	if _, err := LoadState(d); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("a state of another version must be refused: %v", err)
	}
}

func TestProcessRef(t *testing.T) {
	ref, err := RefOf(os.Getpid())
	if err != nil || !ref.Alive() {
		t.Fatalf("our own process must be alive: %+v %v", ref, err)
	}
	recycled := ref
	recycled.StartTime++
	if recycled.Alive() {
		t.Fatal("a pid with another start time is not ours")
	}
	cmd := exec.Command("true")
	cmd.Run()
	if (ProcessRef{Pid: cmd.Process.Pid, StartTime: 1}).Alive() {
		t.Fatal("an exited process is not alive")
	}
}

func TestCleanupOrder(t *testing.T) {
	var got []int
	var c cleanup
	c.Add(func() { got = append(got, 1) })
	c.Add(func() { got = append(got, 2) })
	c.Run()
	if len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Fatalf("steps must run last-in first-out: %v", got)
	}
	c.Add(func() { t.Fatal("released steps must not run") })
	c.Release()
	c.Run()
}

func TestForGuest(t *testing.T) {
	s := &specs.Spec{
		Hooks: &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"},
			{Type: specs.MountNamespace},
		}},
	}
	g := forGuest(s, nil)
	if g.Hooks != nil {
		t.Error("hooks run on the host, not in the guest")
	}
	for _, ns := range g.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Error("the container shares the guest's network namespace")
		}
	}
	if len(g.Linux.Namespaces) != 2 || len(s.Linux.Namespaces) != 3 || s.Hooks == nil {
		t.Error("the host's spec must not be changed")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\011c`); got != "/a b\tc" {
		t.Fatalf("got %q", got)
	}
}

func requiresRoot(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t, "make bind mounts and cgroups")
}

func TestShareBindMountsAndCleanup(t *testing.T) {
	requiresRoot(t)
	bundle := writeBundle(t, `{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},"process":{"args":["sh"],"cwd":"/"},"linux":{},
		"mounts":[{"destination":"/data","type":"bind","source":"data","options":["rbind","ro"]},{"destination":"/tmp","type":"tmpfs","source":"tmpfs"}]}`)
	os.Mkdir(filepath.Join(bundle, "data"), 0o755)
	os.WriteFile(filepath.Join(bundle, "data", "f"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(bundle, "rootfs", "keep"), []byte("x"), 0o644)
	b, err := LoadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	d := Dir{Root: t.TempDir(), ID: "c1"}
	os.Mkdir(d.Path(), 0o700)
	var cl cleanup
	spec, err := prepareShare(d, "c1", b, &cl)
	if err != nil {
		cl.Run()
		t.Fatal(err)
	}
	if spec.Mounts[0].Source != GuestMount("c1", 0, filepath.Join(bundle, "data")) || spec.Mounts[1].Source != "tmpfs" {
		t.Errorf("mount sources not rewritten for the guest: %+v", spec.Mounts)
	}
	if b.Spec.Mounts[0].Source != "data" {
		t.Error("the bundle's spec must not be changed")
	}
	if got, _ := os.ReadFile(filepath.Join(d.Share(), ShareMount("c1", 0, "data"), "f")); string(got) != "hello" {
		t.Errorf("bind mount content: %q", got)
	}
	// Mountpoints were made before the rootfs went read-only.
	if st, err := os.Stat(filepath.Join(bundle, "rootfs", "data")); err != nil || !st.IsDir() {
		t.Errorf("mountpoint /data was not created in a read-only rootfs: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d.Share(), ShareRootfs("c1"), "new"), nil, 0o644); err == nil {
		t.Error("a read-only rootfs must be read-only on the host side of the share too")
	}
	if err := os.WriteFile(filepath.Join(d.ShareSkeleton(), ShareMount("c1", 0, "data"), "new"), nil, 0o644); err == nil {
		t.Error("a ro bind mount must be read-only on the host side of the share too")
	}
	// The export is read-only: nothing can be made in the skeleton
	// through it, while a writable bind inside it stays writable.
	if err := os.WriteFile(filepath.Join(d.Share(), "c1", "junk"), nil, 0o644); err == nil {
		t.Error("the share's export must be read-only")
	}
	cl.Run()
	for _, dir := range []string{d.Share(), d.ShareSkeleton()} {
		if left, _ := mountsUnder(filepath.Join(dir, "c1")); len(left) != 0 {
			t.Fatalf("mounts left: %v", left)
		}
	}
	// The skeleton and its export are mounts (shared propagation) until
	// the state directory goes.
	if left, _ := mountsUnder(d.Path()); !slices.Equal(left, []string{d.ShareSkeleton(), d.Share()}) {
		t.Errorf("mounts under the state dir: %v, want the skeleton and the export", left)
	}
	if err := removeMounted(d.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "keep")); err != nil {
		t.Fatal("cleanup must never remove the user's files")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"9": 9, "KILL": 9, "SIGKILL": 9, "sigterm": 15, "term": 15, "HUP": 1, "RTMIN+2": 36, "SIGRTMAX-1": 63, "SIGRTMIN": 34} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("%q: got %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "65", "-1", "SIGNOPE", "", "RTMIN+99"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// Mountpoints are made inside the rootfs only: a symlink in the image that
// points out of it must not make runvirt create anything on the host.
func TestPrecreateMountpointsStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	bundle := writeBundle(t, goodConfig)
	os.Symlink(outside, filepath.Join(bundle, "rootfs", "abs"))
	os.Symlink("../../", filepath.Join(bundle, "rootfs", "rel"))
	b, err := LoadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Mounts = []specs.Mount{
		{Destination: "/abs/escaped", Type: "tmpfs"},
		{Destination: "/rel/escaped2", Type: "tmpfs"},
		{Destination: "/ok/dir", Type: "tmpfs"},
	}
	precreateMountpoints(b.Rootfs, b.Spec.Mounts, nil)
	if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
		t.Error("created a directory outside the rootfs through an absolute symlink")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bundle), "escaped2")); err == nil {
		t.Error("created a directory outside the rootfs through a relative symlink")
	}
	if st, err := os.Stat(filepath.Join(bundle, "rootfs", "ok", "dir")); err != nil || !st.IsDir() {
		t.Errorf("mountpoint inside the rootfs not created: %v", err)
	}
}

func TestSocketDir(t *testing.T) {
	long := "/" + strings.Repeat("r", 200)
	id := strings.Repeat("f", 64)
	a := Dir{Root: long, ID: id}
	if p := a.AgentSocket(); len(p) > 107 {
		t.Errorf("socket path %s is %d bytes", p, len(p))
	}
	if a.SocketDir() == (Dir{Root: long + "x", ID: id}).SocketDir() || a.SocketDir() == (Dir{Root: long, ID: id + "x"}).SocketDir() {
		t.Error("socket dirs of different containers must differ")
	}
	if a.SocketDir() != (Dir{Root: long + "/", ID: id}).SocketDir() {
		t.Error("the same root spelled differently must give the same socket dir")
	}
}

// A tree named otherwise than the kernel names it (here through a symlink)
// hides its mounts from the mount table; removal must then refuse instead
// of deleting the user's files through a bind mount.
func TestRemoveMountedNeverCrossesAMount(t *testing.T) {
	requiresRoot(t)
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(tmp, "user")
	os.Mkdir(user, 0o755)
	os.WriteFile(filepath.Join(user, "keep"), []byte("x"), 0o644)
	tree := filepath.Join(tmp, "state", "shared", "c1", "rootfs")
	os.MkdirAll(filepath.Join(tmp, "state", "shared"), 0o700)
	src, _, err := openSource(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	skel, err := os.Open(filepath.Join(tmp, "state", "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer skel.Close()
	if err := bindMount(src, skel, "c1/rootfs", true, false, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(tree, unix.MNT_DETACH) })
	link := filepath.Join(tmp, "link")
	os.Symlink(filepath.Join(tmp, "state"), link)
	if err := removeMounted(filepath.Join(link, "shared")); err == nil {
		t.Error("removeMounted through a symlink removed a tree with a mount in it")
	}
	if _, err := os.Stat(filepath.Join(user, "keep")); err != nil {
		t.Fatalf("the user's file was removed through the bind mount: %v", err)
	}
	if err := removeMounted(filepath.Join(tmp, "state")); err != nil {
		t.Fatalf("removeMounted by the kernel's name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(user, "keep")); err != nil {
		t.Fatalf("the user's file was removed: %v", err)
	}
}
