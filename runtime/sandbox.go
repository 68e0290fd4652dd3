package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runvirt/runvirt/hypervisor"
)

// MonitorCommand is the hidden CLI command that runs RunMonitor.
const MonitorCommand = "monitor"

// Globals are the global flags a verb was called with; the monitor inherits
// the ones that matter.
type Globals struct {
	Root      string
	Debug     bool
	LogFormat string
}

// startMonitor starts the sandbox's monitor detached (its own session, so it
// outlives the calling verb and is not hit by the caller's terminal signals)
// and waits until the guest agent is ready or boot failed.
func startMonitor(ctx context.Context, g Globals, d Dir) (ProcessRef, monitorReady, error) {
	exe, err := os.Executable()
	if err != nil {
		return ProcessRef{}, monitorReady{}, fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(d.MonitorLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return ProcessRef{}, monitorReady{}, fmt.Errorf("open monitor log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return ProcessRef{}, monitorReady{}, fmt.Errorf("ready pipe: %w", err)
	}
	defer pr.Close()
	// Flag values are joined to their flags and the id comes after "--":
	// a root or an id may begin with '-' (runc allows "-d" as an id).
	args := []string{"--root=" + g.Root}
	if g.Debug {
		args = append(args, "--debug")
	}
	args = append(args, MonitorCommand, "--", d.ID)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		pw.Close()
		return ProcessRef{}, monitorReady{}, fmt.Errorf("start monitor: %w", err)
	}
	pw.Close()
	// The monitor is reaped by whoever inherits it once we exit; until then
	// a goroutine reaps it so it never lingers as our zombie.
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	ref, err := RefOf(cmd.Process.Pid)
	if err != nil {
		ref = ProcessRef{Pid: cmd.Process.Pid}
	}

	type result struct {
		m   monitorReady
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var m monitorReady
		err := json.NewDecoder(pr).Decode(&m)
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			<-exited
			return ref, monitorReady{}, fmt.Errorf("monitor exited before the vm was ready (%s); see %s", cmd.ProcessState, d.MonitorLog())
		}
		if r.m.Error != "" {
			<-exited
			return ref, monitorReady{}, errors.New(r.m.Error)
		}
		return ref, r.m, nil
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return ref, monitorReady{}, fmt.Errorf("start vm: %w", ctx.Err())
	}
}

// stopSandbox stops the VM of a sandbox: a clean guest power-off first, then
// signals to the monitor, then SIGKILL to whatever is left. It returns once
// no process of the sandbox is alive.
func stopSandbox(d Dir, monitor ProcessRef, log *slog.Logger) error {
	if !monitor.Alive() {
		killQEMU(d)
		return nil
	}
	// The guest syncs before it answers: that may take a while.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	synced, err := connectAgent(d).Shutdown(ctx)
	cancel()
	if synced {
		// The guest's data is on the host: stopping QEMU now (the
		// monitor's SIGTERM) saves waiting for the guest's power-off.
		syscall.Kill(monitor.Pid, syscall.SIGTERM)
	}
	if err == nil && waitGone(monitor, 10*time.Second) {
		return nil
	}
	log.Debug("clean guest shutdown failed, quitting qemu", "err", err)
	if qerr := quitQEMU(d); qerr == nil && waitGone(monitor, 5*time.Second) {
		return nil
	}
	syscall.Kill(monitor.Pid, syscall.SIGTERM)
	if waitGone(monitor, 5*time.Second) {
		return nil
	}
	syscall.Kill(monitor.Pid, syscall.SIGKILL)
	killQEMU(d)
	if !waitGone(monitor, 5*time.Second) {
		return fmt.Errorf("monitor %d of sandbox %s does not exit", monitor.Pid, d.ID)
	}
	return nil
}

// quitQEMU asks QEMU to quit through QMP, within a deadline.
func quitQEMU(d Dir) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	q, err := hypervisor.DialQMP(ctx, d.QMPSocket())
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Quit(ctx)
}

// killQEMU kills the QEMU recorded in the state dir, if it still runs
// (QEMU dies with its monitor through PDEATHSIG; this covers the rest).
// The record holds QEMU's pid and start time: after a monitor crash the
// pid may belong to another process by now, which is never signalled. A
// record without a start time (from an older monitor) is not trusted.
func killQEMU(d Dir) {
	ref, err := readProcessRef(d.QEMUPid())
	if err != nil || ref.Pid <= 1 || !ref.Alive() {
		return
	}
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(ref.Pid) + "/comm"); err == nil && strings.HasPrefix(string(comm), "qemu") {
		syscall.Kill(ref.Pid, syscall.SIGKILL)
	}
}

// writeProcessRef records a helper's pid and start time in path.
func writeProcessRef(path string, ref ProcessRef) error {
	b, err := json.Marshal(ref)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, b, 0o600)
}

// readProcessRef reads what writeProcessRef wrote.
func readProcessRef(path string) (ProcessRef, error) {
	var ref ProcessRef
	b, err := os.ReadFile(path)
	if err != nil {
		return ref, err
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		return ref, fmt.Errorf("decode %s: %w", path, err)
	}
	if ref.StartTime == 0 {
		return ref, fmt.Errorf("%s: no start time", path)
	}
	return ref, nil
}
