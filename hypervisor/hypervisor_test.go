package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func devNull(t *testing.T) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// baseVM's inherited files are, in order: the console (fd 3), QMP (4),
// virtiofsd (5), the agent (6).
func baseVM(t *testing.T) *VM {
	return &VM{
		ID: "c1", QEMU: "qemu-system-x86_64", Kernel: "/k", Initrd: "/i",
		Machine: "q35", Accel: "tcg", VCPUs: 1, MemoryMiB: 256,
		SharedFS: "virtio-fs", Virtiofsd: devNull(t), ShareDir: "/s/shared",
		Transport: "serial", AgentConn: devNull(t),
		QMP: devNull(t), Console: devNull(t), ConsoleLog: "/s,x/console.log",
	}
}

func argValue(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func hasArg(args []string, flag, prefix string) bool {
	for _, v := range argValue(args, flag) {
		if strings.HasPrefix(v, prefix) {
			return true
		}
	}
	return false
}

func TestArgsQ35VirtiofsSerial(t *testing.T) {
	vm := baseVM(t)
	args, files, err := vm.Args()
	if err != nil {
		t.Fatal(err)
	}
	if want := []*os.File{vm.Console, vm.QMP, vm.Virtiofsd, vm.AgentConn}; !slices.Equal(files, want) {
		t.Fatalf("inherited files %v, want %v", files, want)
	}
	for _, want := range []struct{ flag, prefix string }{
		{"-machine", "q35,accel=tcg,memory-backend=mem"},
		{"-object", "memory-backend-memfd,id=mem,size=256M,share=on"},
		{"-device", "vhost-user-fs-pci,chardev=vfs,tag=runvirt"},
		{"-chardev", "socket,id=vfs,fd=5"},
		{"-chardev", "socket,id=agent,fd=6"},
		{"-device", "virtserialport,chardev=agent,name=runvirt.agent"},
		{"-device", "virtio-serial-pci,max_ports=2"},
		{"-chardev", "socket,id=qmp,fd=4,server=on,wait=off"},
		// The console's path stays on the command line (ps shows whose
		// QEMU it is), escaped for QEMU's option syntax.
		{"-add-fd", "fd=3,set=1,opaque=/s,,x/console.log"},
		{"-chardev", "file,id=console,path=/dev/fdset/1,append=on"},
		{"-kernel", "/k"},
		{"-initrd", "/i"},
		{"-m", "256M"},
	} {
		if !hasArg(args, want.flag, want.prefix) {
			t.Errorf("missing %s %s in %v", want.flag, want.prefix, args)
		}
	}
	if hasArg(args, "-cpu", "host") {
		t.Error("-cpu host needs KVM")
	}
	for _, a := range []string{"-nodefaults", "-no-reboot", "-no-user-config"} {
		found := false
		for _, x := range args {
			found = found || x == a
		}
		if !found {
			t.Errorf("missing %s", a)
		}
	}
	cmdline := argValue(args, "-append")[0]
	for _, k := range []string{"runvirt.transport=serial", "runvirt.share=virtio-fs", "console=ttyS0", "panic=-1"} {
		if !strings.Contains(cmdline, k) {
			t.Errorf("kernel command line %q lacks %s", cmdline, k)
		}
	}
}

func TestArgsMicrovm9pVsockKVM(t *testing.T) {
	vm := baseVM(t)
	vm.Machine, vm.Accel, vm.SharedFS, vm.Virtiofsd = "microvm", "kvm", "9p", nil
	vm.Transport, vm.AgentConn = "vsock", nil
	vm.VhostFD, vm.GuestCID, vm.VsockPort = os.Stdin, 42, 1234
	vm.Debug = true
	vm.TSCkHz = 2596124
	args, files, err := vm.Args()
	if err != nil {
		t.Fatal(err)
	}
	if want := []*os.File{vm.Console, vm.QMP, os.Stdin}; !slices.Equal(files, want) {
		t.Fatalf("inherited files %v, want %v", files, want)
	}
	for _, want := range []struct{ flag, prefix string }{
		{"-machine", "microvm,accel=kvm"},
		{"-cpu", "host"},
		{"-fsdev", "local,id=share,security_model=none"},
		{"-device", "virtio-9p-device,fsdev=share,mount_tag=runvirt"},
		{"-device", "vhost-vsock-device,guest-cid=42,vhostfd=5"},
		{"-device", "virtio-rng-device"},
	} {
		if !hasArg(args, want.flag, want.prefix) {
			t.Errorf("missing %s %s in %v", want.flag, want.prefix, args)
		}
	}
	if hasArg(args, "-object", "memory-backend-memfd") {
		t.Error("9p needs no shared memory backend")
	}
	cmdline := argValue(args, "-append")[0]
	for _, k := range []string{"runvirt.transport=vsock", "runvirt.vsock_port=1234", "runvirt.share=9p", "runvirt.debug=1", "pci=off", "tsc_early_khz=2596124"} {
		if !strings.Contains(cmdline, k) {
			t.Errorf("kernel command line %q lacks %s", cmdline, k)
		}
	}
}

// Each NIC is a tap fd QEMU inherits after the agent's socket, and a
// virtio-net device with the MAC of the interface it replaces.
func TestArgsNets(t *testing.T) {
	for _, machine := range []string{"q35", "microvm"} {
		vm := baseVM(t)
		vm.Machine = machine
		vm.Nets = []NetIface{{Tap: os.Stdin, MAC: "02:42:ac:11:00:02"}, {Tap: os.Stdout, MAC: "ae:00:00:00:00:01"}}
		args, files, err := vm.Args()
		if err != nil {
			t.Fatal(err)
		}
		if want := []*os.File{vm.Console, vm.QMP, vm.Virtiofsd, vm.AgentConn, os.Stdin, os.Stdout}; !slices.Equal(files, want) {
			t.Fatalf("%s: want the taps inherited last, got %v", machine, files)
		}
		dev := "virtio-net-pci"
		if machine == "microvm" {
			dev = "virtio-net-device"
		}
		if got, want := argValue(args, "-netdev"), []string{"tap,id=net0,fd=7", "tap,id=net1,fd=8"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: -netdev %v, want %v", machine, got, want)
		}
		for _, want := range []string{dev + ",netdev=net0,mac=02:42:ac:11:00:02", dev + ",netdev=net1,mac=ae:00:00:00:00:01"} {
			if !hasArg(args, "-device", want) {
				t.Errorf("%s: missing -device %s in %v", machine, want, args)
			}
		}
	}
	// No NIC, no network device: QEMU's -nodefaults adds none either.
	args, _, err := baseVM(t).Args()
	if err != nil {
		t.Fatal(err)
	}
	if hasArg(args, "-netdev", "") || hasArg(args, "-device", "virtio-net") {
		t.Errorf("a vm without nets has a nic: %v", args)
	}
}

// A copy of a template: its RAM is the template's file mapped privately,
// and QEMU waits for the state (-incoming defer) that IncomingURI names:
// the fd it inherits the state file on.
func TestArgsTemplateCopy(t *testing.T) {
	vm := baseVM(t)
	vm.Machine, vm.SharedFS, vm.Virtiofsd, vm.ShareDir = "microvm", "9p", nil, "/share"
	vm.Template, vm.RAMFile, vm.Incoming = true, "/tmpl/a,b/ram", os.Stdin
	args, files, err := vm.Args()
	if err != nil {
		t.Fatal(err)
	}
	if m := argValue(args, "-machine"); len(m) != 1 || !strings.Contains(m[0], "memory-backend=mem") {
		t.Errorf("-machine %v does not use the memory backend", m)
	}
	if !hasArg(args, "-object", "memory-backend-file,id=mem,size=256M,mem-path=/tmpl/a,,b/ram,share=off") {
		t.Errorf("no private file-backed RAM in %v", args)
	}
	if got := argValue(args, "-incoming"); len(got) != 1 || got[0] != "defer" {
		t.Errorf("-incoming %v, want defer", got)
	}
	i := slices.Index(files, os.Stdin)
	if i < 0 || vm.IncomingURI() != fmt.Sprintf("fd:%d", 3+i) {
		t.Errorf("IncomingURI %s, state file inherited as fd %d", vm.IncomingURI(), 3+i)
	}
	if cmdline := argValue(args, "-append")[0]; !strings.Contains(cmdline, "runvirt.template=1") {
		t.Errorf("kernel command line %q lacks runvirt.template=1", cmdline)
	}

	vm = baseVM(t)
	vm.RAMFile, vm.RAMShared = "/tmpl/ram", true
	if _, _, err := vm.Args(); err == nil || !strings.Contains(err.Error(), "9p only") {
		t.Errorf("file-backed RAM with virtio-fs: error %v", err)
	}
}

func TestArgsRejectsIncompleteVM(t *testing.T) {
	for name, mut := range map[string]func(*VM){
		"machine":      func(v *VM) { v.Machine = "pc" },
		"accel":        func(v *VM) { v.Accel = "hvf" },
		"no virtiofsd": func(v *VM) { v.Virtiofsd = nil },
		"no console":   func(v *VM) { v.Console = nil },
		"no qmp":       func(v *VM) { v.QMP = nil },
		"9p as a user": func(v *VM) { v.SharedFS, v.User = "9p", &User{UID: 5, GID: 5} },
		"no agent":     func(v *VM) { v.AgentConn = nil },
		"vsock no cid": func(v *VM) { v.Transport = "vsock" },
		"transport":    func(v *VM) { v.Transport = "tcp" },
		"nic no tap":   func(v *VM) { v.Nets = []NetIface{{MAC: "02:00:00:00:00:01"}} },
		"nic bad mac":  func(v *VM) { v.Nets = []NetIface{{Tap: os.Stdin, MAC: "02:00:00:00:00:01,x=y"}} },
		"nic long mac": func(v *VM) { v.Nets = []NetIface{{Tap: os.Stdin, MAC: "02:00:00:00:00:00:00:01"}} },
	} {
		vm := baseVM(t)
		mut(vm)
		if _, _, err := vm.Args(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDetectKVM(t *testing.T) {
	dir := t.TempDir()
	noFlags := filepath.Join(dir, "cpuinfo-plain")
	os.WriteFile(noFlags, []byte("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n"), 0o644)
	withVMX := filepath.Join(dir, "cpuinfo-vmx")
	os.WriteFile(withVMX, []byte("processor\t: 0\nflags\t\t: fpu vmx sse2\n"), 0o644)

	st := detectKVM(noFlags, "/dev/kvm")
	if st.Usable || !strings.Contains(st.Reason, "neither vmx nor svm") {
		t.Errorf("no vmx/svm flag must mean no KVM, whatever the device node: %+v", st)
	}
	st = detectKVM(withVMX, filepath.Join(dir, "no-such-kvm"))
	if st.Usable || !strings.Contains(st.Reason, "cannot be opened") {
		t.Errorf("a missing device must mean no KVM: %+v", st)
	}
	notKVM := filepath.Join(dir, "not-kvm")
	os.WriteFile(notKVM, nil, 0o644)
	st = detectKVM(withVMX, notKVM)
	if st.Usable {
		t.Errorf("a node that does not answer KVM ioctls must mean no KVM: %+v", st)
	}
}

func TestChooseAccel(t *testing.T) {
	yes, no := KVMStatus{Usable: true}, KVMStatus{Reason: "no vmx"}
	if a, w, err := ChooseAccel("auto", no); a != "tcg" || w == "" || err != nil {
		t.Errorf("auto without kvm: %q %q %v", a, w, err)
	}
	if a, w, err := ChooseAccel("auto", yes); a != "kvm" || w != "" || err != nil {
		t.Errorf("auto with kvm: %q %q %v", a, w, err)
	}
	if _, _, err := ChooseAccel("kvm", no); err == nil || !strings.Contains(err.Error(), "no vmx") {
		t.Errorf("kvm without kvm must fail with the reason: %v", err)
	}
	if a, _, err := ChooseAccel("tcg", yes); a != "tcg" || err != nil {
		t.Errorf("tcg: %q %v", a, err)
	}
}

// fakeQMP answers like QEMU's monitor: a greeting, then one reply per line.
func fakeQMP(t *testing.T, replies map[string]string, hang bool) string {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP":{"version":{"qemu":{"micro":0,"minor":2,"major":7},"package":""},"capabilities":[]}}` + "\n"))
		// QEMU reads a JSON stream; commands need not end in newlines.
		dec := json.NewDecoder(c)
		for {
			var cmd struct{ Execute string }
			if dec.Decode(&cmd) != nil {
				return
			}
			if cmd.Execute == "qmp_capabilities" {
				c.Write([]byte(`{"return":{}}` + "\n"))
				continue
			}
			if hang {
				time.Sleep(time.Hour)
			}
			c.Write([]byte(replies[cmd.Execute] + "\n"))
		}
	}()
	return path
}

func TestQMPStatus(t *testing.T) {
	path := fakeQMP(t, map[string]string{"query-status": `{"return":{"status":"running","running":true}}`}, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st, err := q.Status(ctx)
	if err != nil || st != "running" {
		t.Fatalf("status %q, %v", st, err)
	}
}

func TestQMPDeadline(t *testing.T) {
	path := fakeQMP(t, nil, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if _, err := q.Status(short); err == nil {
		t.Fatal("a monitor that never answers must give an error")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("the deadline was not honoured")
	}
}

// With a user, QEMU is started as it, with no supplementary group but the
// ones given, and still dies with its starter; without one it runs as root.
func TestCommandUser(t *testing.T) {
	vm := baseVM(t)
	cmd, err := vm.Command()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.SysProcAttr.Credential != nil || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("root qemu: %+v", cmd.SysProcAttr)
	}
	vm.User = &User{UID: 1879048200, GID: 1879048200}
	cmd, err = vm.Command()
	if err != nil {
		t.Fatal(err)
	}
	c := cmd.SysProcAttr.Credential
	if c == nil || c.Uid != 1879048200 || c.Gid != 1879048200 || len(c.Groups) != 0 || c.NoSetGroups {
		t.Errorf("credential %+v", c)
	}
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Error("qemu run as a user must still die with its monitor")
	}
	vm.User.Groups = []uint32{107}
	cmd, _ = vm.Command()
	if g := cmd.SysProcAttr.Credential.Groups; len(g) != 1 || g[0] != 107 {
		t.Errorf("groups %v", g)
	}
}

func TestCheckReadable(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir's parent is private to root: open it up, as /usr/share is.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	f := filepath.Join(dir, "vmlinux")
	os.WriteFile(f, nil, 0o644)
	other := &User{UID: 1879048200, GID: 1879048200}
	if err := CheckReadable(f, other); err != nil {
		t.Errorf("a 0644 file in 0755 dirs: %v", err)
	}
	if err := CheckReadable(f, nil); err != nil {
		t.Errorf("root: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(f, link)
	if err := CheckReadable(link, other); err != nil {
		t.Errorf("through a symlink: %v", err)
	}
	os.Chmod(f, 0o640)
	if err := CheckReadable(f, other); err == nil || !strings.Contains(err.Error(), "not readable by uid 1879048200") {
		t.Errorf("a 0640 file: %v", err)
	}
	if err := CheckReadable(f, &User{UID: 1879048200, GID: 1879048200, Groups: []uint32{uint32(os.Getgid())}}); err != nil {
		t.Errorf("a 0640 file, read through its group: %v", err)
	}
	os.Chmod(f, 0o644)
	os.Chmod(dir, 0o700)
	if err := CheckReadable(f, other); err == nil || !strings.Contains(err.Error(), dir+" (mode 700") {
		t.Errorf("a 0700 dir: %v", err)
	}
	if err := CheckReadable(filepath.Join(dir, "none"), other); err == nil {
		t.Error("a missing file")
	}
}

// Saving a VM waits for the migration to end, and fails on a failed one;
// restoring runs a copy that loaded paused, and fails on a status no
// restore passes through.
func TestQMPSaveAndRestore(t *testing.T) {
	ok := `{"return":{}}`
	for _, tc := range []struct {
		name    string
		replies map[string]string
		run     func(context.Context, *QMP) error
		wantErr string
	}{
		{"save", map[string]string{"stop": ok, "migrate-set-capabilities": ok, "migrate": ok, "query-migrate": `{"return":{"status":"completed"}}`},
			func(ctx context.Context, q *QMP) error { return q.SaveStopped(ctx, "unix:/x", true) }, ""},
		{"save fails", map[string]string{"stop": ok, "migrate": ok, "query-migrate": `{"return":{"status":"failed"}}`},
			func(ctx context.Context, q *QMP) error { return q.SaveStopped(ctx, "unix:/x", false) }, "migration failed"},
		{"restore paused", map[string]string{"migrate-set-capabilities": ok, "migrate-incoming": ok, "query-status": `{"return":{"status":"paused"}}`, "cont": ok},
			func(ctx context.Context, q *QMP) error { return q.RestoreAndRun(ctx, "fd:5", true) }, ""},
		{"restore shut down", map[string]string{"migrate-incoming": ok, "query-status": `{"return":{"status":"shutdown"}}`},
			func(ctx context.Context, q *QMP) error { return q.RestoreAndRun(ctx, "fd:5", false) }, `vm status "shutdown"`},
		{"no x-ignore-shared", map[string]string{"migrate-set-capabilities": `{"error":{"class":"GenericError","desc":"no such capability"}}`},
			func(ctx context.Context, q *QMP) error { return q.RestoreAndRun(ctx, "fd:5", true) }, "x-ignore-shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			q, err := DialQMP(ctx, fakeQMP(t, tc.replies, false))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			err = tc.run(ctx, q)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
