package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runvirt/runvirt/hypervisor"
)

// The template floor: what starting a VM from a saved, booted guest costs
// with this QEMU, against booting it (docs/design-templates.md). The floor
// VM boots once with BENCH_TEMPLATE=1, its init says BENCH-TEMPLATE and
// waits on the console, and the bench saves it (QMP stop, then migrate to a
// file through `exec:cat`). Each measured start is a new QEMU with the same command line and
// `-incoming defer`: QMP migrate-incoming from the file, which QEMU has as an
// inherited fd (no `exec:` helper, which runvirt's QEMU may not spawn, and
// no pipe whose every 64 KiB needs the reader scheduled); when the load
// completes (the copy is paused, as the template was) QMP cont, then the
// bench writes a line on the console, and
// the restored init prints BENCH-RESUMED and powers off. The wall time
// (QEMU exec → exit) is the boot floor's, with the boot replaced by the
// restore.

// liveVM is a floor QEMU whose console and QMP the bench holds: the
// console as our end of a socket pair, QMP as a socket QEMU listens on.
type liveVM struct {
	cmd     *exec.Cmd
	console *os.File
	lines   chan string // console lines, closed at EOF
	qmpPath string
	out     *strings.Builder
}

// stateFD is the fd number QEMU gets the template's state file on.
const stateFD = 5

func (f floorVM) startLive(dir, name string, state *os.File, extra ...string) (*liveVM, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "console"), os.NewFile(uintptr(pair[1]), "console-qemu")
	defer theirs.Close()
	qmpPath := filepath.Join(dir, name+".qmp")
	os.Remove(qmpPath)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: qmpPath, Net: "unix"})
	if err != nil {
		ours.Close()
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	qmpFile, err := ln.File()
	ln.Close()
	if err != nil {
		ours.Close()
		return nil, err
	}
	defer qmpFile.Close()
	// fds 3, 4 and 5 (stateFD) in QEMU: ExtraFiles' order.
	f.ConsoleChardev = "socket,id=console,fd=3"
	args := append(f.args(), "-chardev", "socket,id=qmp,fd=4,server=on,wait=off", "-mon", "chardev=qmp,mode=control")
	args = append(args, extra...)
	cmd := exec.Command(f.QEMU, args...)
	cmd.ExtraFiles = []*os.File{theirs, qmpFile}
	if state != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, state)
	}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, err
	}
	vm := &liveVM{cmd: cmd, console: ours, lines: make(chan string, 64), qmpPath: qmpPath, out: out}
	go func() {
		defer close(vm.lines)
		sc := bufio.NewScanner(ours)
		for sc.Scan() {
			vm.lines <- strings.TrimSpace(sc.Text())
		}
	}()
	return vm, nil
}

// waitLine waits for a console line holding marker.
func (vm *liveVM) waitLine(ctx context.Context, marker string) (string, error) {
	for {
		select {
		case l, ok := <-vm.lines:
			if !ok {
				return "", fmt.Errorf("console closed before %q (qemu: %s)", marker, strings.TrimSpace(vm.out.String()))
			}
			if strings.Contains(l, marker) {
				return l, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("no %q on the console: %w", marker, ctx.Err())
		}
	}
}

// stop kills QEMU if it still runs and releases what the bench held.
func (vm *liveVM) stop() {
	vm.cmd.Process.Kill()
	vm.cmd.Wait()
	vm.console.Close()
	os.Remove(vm.qmpPath)
}

// makeTemplate boots the template-mode floor VM and saves it to file; it
// returns the size of the saved stream.
func (f floorVM) makeTemplate(ctx context.Context, dir, file string) (int64, error) {
	f.Template, f.RAMShared = true, true
	vm, err := f.startLive(dir, "template", nil)
	if err != nil {
		return 0, err
	}
	defer vm.stop()
	if _, err := vm.waitLine(ctx, "BENCH-TEMPLATE"); err != nil {
		return 0, err
	}
	q, err := hypervisor.DialQMP(ctx, vm.qmpPath)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	// QEMU 7.2 takes only a named fd (QMP getfd, passed over the socket)
	// for an outgoing fd: migration; the template QEMU may spawn.
	if err := q.SaveStopped(ctx, "exec:cat > "+file, f.RAMFile != ""); err != nil {
		return 0, fmt.Errorf("saving the template: %w", err)
	}
	q.Quit(ctx)
	fi, err := os.Stat(file)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// startCopy starts a copy of the template saved in file and lets it run:
// its init waits on the console. Milestones are ms since QEMU's exec:
// qemu_ready (QMP answered), restored (the state loaded and the VM told to
// run); and rss_restored_kib, QEMU's RSS then.
func (f floorVM) startCopy(ctx context.Context, dir, name, file string) (*liveVM, *hypervisor.QMP, map[string]float64, time.Time, error) {
	f.Template, f.RAMShared = true, false
	in, err := os.Open(file)
	if err != nil {
		return nil, nil, nil, time.Time{}, err
	}
	defer in.Close()
	t0 := time.Now()
	vm, err := f.startLive(dir, name, in, "-incoming", "defer")
	if err != nil {
		return nil, nil, nil, t0, err
	}
	m := make(map[string]float64)
	q, err := hypervisor.DialQMP(ctx, vm.qmpPath)
	if err != nil {
		vm.stop()
		return nil, nil, nil, t0, err
	}
	fail := func(err error) (*liveVM, *hypervisor.QMP, map[string]float64, time.Time, error) {
		q.Close()
		vm.stop()
		return nil, nil, nil, t0, fmt.Errorf("restoring the template: %w", err)
	}
	m["qemu_ready"] = ms(time.Since(t0))
	// The template was saved stopped: its copy is told to run once loaded.
	if err := q.RestoreAndRun(ctx, fmt.Sprintf("fd:%d", stateFD), f.RAMFile != ""); err != nil {
		return fail(err)
	}
	m["restored"] = ms(time.Since(t0))
	if kb, err := statusKiB(vm.cmd.Process.Pid, "VmRSS"); err == nil {
		m["rss_restored_kib"] = float64(kb)
	}
	return vm, q, m, t0, nil
}

// restore starts a copy of the template and runs it to its power off; on
// top of startCopy's milestones, resumed: the restored init answered the
// line written to its console.
func (f floorVM) restore(ctx context.Context, dir, file string) (time.Duration, map[string]float64, error) {
	vm, q, m, t0, err := f.startCopy(ctx, dir, "copy", file)
	if err != nil {
		return 0, nil, err
	}
	defer vm.stop()
	defer q.Close()
	if _, err := vm.console.Write([]byte("go\n")); err != nil {
		return 0, nil, err
	}
	if _, err := vm.waitLine(ctx, "BENCH-RESUMED"); err != nil {
		return 0, nil, err
	}
	m["resumed"] = ms(time.Since(t0))
	q.Close()
	if err := vm.cmd.Wait(); err != nil {
		return 0, nil, fmt.Errorf("restored qemu: %v: %s", err, strings.TrimSpace(vm.out.String()))
	}
	return time.Since(t0), m, nil
}

// The two template shapes measured.
const (
	tmplCopy   = "copy"   // anonymous guest RAM, saved in the stream and loaded
	tmplShared = "shared" // guest RAM in a file: x-ignore-shared, mapped privately
)

// template returns the floor VM of a template shape and its state file,
// saving the template first if this run has not.
func (b *bench) template(ctx context.Context, shape string) (floorVM, string, string, error) {
	f := floorVM{QEMU: b.o.QEMU, Kernel: b.kernel(), Initrd: b.floorRD, Machine: "microvm",
		Accel: b.accel, MemoryMiB: 256}
	dir := filepath.Join(b.work, "template-"+shape)
	file := filepath.Join(dir, "vmstate")
	if shape == tmplShared {
		f.RAMFile = filepath.Join(dir, "ram")
	}
	if b.res.TemplateBytes[shape] > 0 {
		return f, dir, file, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, dir, file, err
	}
	n, err := f.makeTemplate(ctx, dir, file)
	if err != nil {
		return f, dir, file, err
	}
	b.res.TemplateBytes[shape] = n
	c := f
	c.Template, c.ConsoleChardev = true, "socket,id=console,fd=3"
	b.res.Cmdline["template "+shape] = b.o.QEMU + " " + shellJoin(c.args()) +
		" -chardev socket,id=qmp,fd=4,server=on,wait=off -mon chardev=qmp,mode=control -incoming defer" +
		fmt.Sprintf(" # QMP migrate-incoming uri=fd:%d (the saved state)", stateFD)
	return f, dir, file, nil
}

// templateRestore is a start-latency variant: the microvm floor, started
// from a saved template of the given shape instead of booted. The first
// call (the uncounted warm-up round) saves the template.
func (b *bench) templateRestore(shape string) func() (time.Duration, map[string]float64, error) {
	return func() (time.Duration, map[string]float64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		f, dir, file, err := b.template(ctx, shape)
		if err != nil {
			return 0, nil, err
		}
		return f.restore(ctx, dir, file)
	}
}

// idleCopies measures 1 and then n idle copies of the shared-RAM template,
// as idleFloors does bare idle QEMUs (a copy's guest RAM is a private
// mapping of the template's file: rssFile, not rssShmem).
func (b *bench) idleCopies(n int) idleResult {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	f, dir, file, err := b.template(ctx, tmplShared)
	if err != nil {
		b.fail("footprint: template: %v", err)
		return idleResult{}
	}
	var vms []*liveVM
	defer func() {
		for _, vm := range vms {
			vm.stop()
		}
	}()
	r := b.measureIdle(n, func(i int) (int, bool) {
		vm, q, _, _, err := f.startCopy(ctx, dir, fmt.Sprintf("idle-%d", i), file)
		if err != nil {
			b.fail("footprint: %v", err)
			return 0, false
		}
		q.Close()
		vms = append(vms, vm)
		return vm.cmd.Process.Pid, true
	})
	r.args = b.res.Cmdline["template "+tmplShared]
	return r
}
