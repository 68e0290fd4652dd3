package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runvirt/runvirt/hypervisor"
)

// writeInitramfs writes a newc cpio holding /init (the given static
// binary) and the /dev/console and /dev/null nodes, so it needs no root and
// no cpio tool.
func writeInitramfs(path, init string) error {
	data, err := os.ReadFile(init)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	ino := 1
	entry := func(name string, mode uint32, rmaj, rmin int, body []byte) {
		nlink := 1
		if mode&syscall.S_IFDIR != 0 {
			nlink = 2
		}
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, nlink, 0, len(body), 0, 0, rmaj, rmin, len(name)+1, 0)
		ino++
		b.WriteString(name)
		b.WriteByte(0)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(body)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry("dev", syscall.S_IFDIR|0o755, 0, 0, nil)
	entry("dev/console", syscall.S_IFCHR|0o600, 5, 1, nil)
	entry("dev/null", syscall.S_IFCHR|0o666, 1, 3, nil)
	entry("init", syscall.S_IFREG|0o755, 0, 0, data)
	entry("TRAILER!!!", 0, 0, 0, nil)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// floorVM is a bare QEMU: runvirt's machine, accelerator, memory, kernel
// and kernel command line (hypervisor.VM.Cmdline, less the runvirt.* keys
// the trivial init does not read), with none of runvirt's devices (no QMP,
// virtio-rng, virtio-serial, shared file system): only the serial console.
type floorVM struct {
	QEMU, Kernel, Initrd, Machine, Accel string
	MemoryMiB                            int
	Idle                                 bool
	// MemFD backs the guest RAM with a shared memfd, as runvirt does for
	// virtio-fs (instead of anonymous memory, which QEMU madvises for
	// transparent huge pages).
	MemFD   bool
	Console string
	// ConsoleChardev, when set, replaces the console file (Console) with
	// this chardev (id=console).
	ConsoleChardev string
	// Template makes the init wait on its console (BENCH_TEMPLATE=1).
	Template bool
	// RAMFile backs the guest RAM with this file, mapped shared (the
	// template, whose RAM is then the file) or privately (a copy that
	// starts from the template's RAM and keeps its writes to itself).
	RAMFile   string
	RAMShared bool
}

func (f floorVM) args() []string {
	vm := hypervisor.VM{Machine: f.Machine, Transport: "serial", SharedFS: "virtio-fs"}
	if f.Machine == "microvm" {
		vm.TSCkHz = hypervisor.HostTSCkHz()
	}
	var params []string
	for _, p := range strings.Fields(vm.Cmdline()) {
		if !strings.HasPrefix(p, "runvirt.") {
			params = append(params, p)
		}
	}
	if f.Idle {
		params = append(params, "BENCH_IDLE=1")
	}
	if f.Template {
		params = append(params, "BENCH_TEMPLATE=1")
	}
	console := "file,id=console,path=" + f.Console
	if f.ConsoleChardev != "" {
		console = f.ConsoleChardev
	}
	machine := f.Machine + ",accel=" + f.Accel
	if f.MemFD || f.RAMFile != "" {
		machine += ",memory-backend=mem"
	}
	a := []string{
		"-machine", machine,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-m", strconv.Itoa(f.MemoryMiB) + "M", "-smp", "1",
		"-kernel", f.Kernel, "-initrd", f.Initrd,
		"-append", strings.Join(params, " "),
		"-chardev", console,
		"-serial", "chardev:console",
	}
	if f.MemFD {
		a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", f.MemoryMiB))
	}
	if f.RAMFile != "" {
		share := "off"
		if f.RAMShared {
			share = "on"
		}
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", f.MemoryMiB, f.RAMFile, share))
	}
	if f.Accel == "kvm" {
		a = append(a, "-cpu", "host")
	}
	return a
}

// boot runs the floor VM to its power off: QEMU exec → QEMU exit, and the
// guest's CLOCK_BOOTTIME when its init started.
func (f floorVM) boot(ctx context.Context) (wall time.Duration, guestMs float64, err error) {
	os.Remove(f.Console)
	cmd := exec.CommandContext(ctx, f.QEMU, f.args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	wall = time.Since(t0)
	if err != nil {
		return wall, 0, fmt.Errorf("floor qemu: %v: %s", err, strings.TrimSpace(out.String()))
	}
	guestMs = -1
	if v, ok := scanConsole(f.Console, "BENCH-INIT boottime_ms="); ok {
		guestMs, _ = strconv.ParseFloat(v, 64)
	} else {
		return wall, 0, fmt.Errorf("floor guest never reached init (console %s)", f.Console)
	}
	return wall, guestMs, nil
}

// startIdle starts the idle floor VM and waits for its init to say so.
func (f floorVM) startIdle(timeout time.Duration) (*exec.Cmd, error) {
	os.Remove(f.Console)
	cmd := exec.Command(f.QEMU, f.args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, ok := scanConsole(f.Console, "BENCH-IDLE"); ok {
			return cmd, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("idle floor vm not up after %s (console %s)", timeout, f.Console)
}

func scanConsole(path, prefix string) (string, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, prefix); i >= 0 {
			return strings.Fields(line[i+len(prefix):] + " x")[0], true
		}
	}
	return "", false
}

func consolePath(dir, name string) string { return filepath.Join(dir, name+".console") }

// startOnly is QEMU's own start for the floor's command line: QEMU with -S
// (the vCPU never runs) and QMP on stdin, which quits as soon as QEMU reads
// it, so the wall time is QEMU exec → ready to run the guest → exit.
func (f floorVM) startOnly(ctx context.Context) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, f.QEMU, f.startOnlyArgs()...)
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	if err != nil {
		return wall, fmt.Errorf("qemu -S: %v: %s", err, strings.TrimSpace(out.String()))
	}
	if !strings.Contains(out.String(), "host-qmp-quit") {
		return wall, fmt.Errorf("qemu -S did not quit over QMP: %s", strings.TrimSpace(out.String()))
	}
	return wall, nil
}

func (f floorVM) startOnlyArgs() []string {
	return append(f.args(), "-S", "-qmp", "stdio")
}

// qemuStartOnly is a start-latency variant: QEMU's start alone, with the
// microvm floor's command line.
func (b *bench) qemuStartOnly() (time.Duration, map[string]float64, error) {
	f := floorVM{QEMU: b.o.QEMU, Kernel: b.kernel(), Initrd: b.floorRD, Machine: "microvm",
		Accel: b.accel, MemoryMiB: 256, Console: consolePath(b.work, "qemu-start")}
	b.res.Cmdline["qemu start only"] = b.o.QEMU + " " + shellJoin(f.startOnlyArgs())
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	d, err := f.startOnly(ctx)
	return d, nil, err
}
