package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/config"
)

// RunOptions are the inputs of `runvirt run`.
type RunOptions struct {
	Globals
	Config        *config.Config
	Bundle        string
	ID            string
	PidFile       string
	ConsoleSocket string
	Detach        bool
	Log           *slog.Logger
	Stdin         *os.File
	Stdout        *os.File
	Stderr        *os.File
}

// Run is create and start in one. Detached it returns once the process has
// started. In the foreground it forwards the signals it receives to the
// stand-in (and so to the workload), waits for the workload, deletes the
// container and returns the workload's exit status.
func Run(ctx context.Context, o RunOptions) (int, error) {
	var sigs chan os.Signal
	if !o.Detach {
		var stop func()
		sigs, stop = NotifySignals()
		defer stop()
	}
	t0 := time.Now()
	c, err := Create(ctx, CreateOptions{
		Globals: o.Globals, Config: o.Config, Bundle: o.Bundle, ID: o.ID,
		PidFile: o.PidFile, ConsoleSocket: o.ConsoleSocket, Log: o.Log,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		Interrupt: sigs, Foreground: !o.Detach,
	})
	if err != nil {
		return 0, err
	}
	created := time.Now()
	if err := Start(ctx, o.Globals, o.ID, o.Log); err != nil {
		Delete(context.Background(), o.Globals, o.ID, true, o.Log)
		return 0, err
	}
	if o.Detach {
		return 0, nil
	}
	started := time.Now()
	status := waitStandIn(c.State.StandIn.Pid, sigs)
	exited := time.Now()
	err = Delete(context.Background(), o.Globals, o.ID, true, o.Log)
	ms := func(t time.Time) int64 { return t.Sub(t0).Milliseconds() }
	o.Log.Debug("run timing (ms since runvirt started)", "container", o.ID,
		"container_created", ms(created), "workload_started", ms(started),
		"workload_exited", ms(exited), "torn_down", ms(time.Now()))
	return status, err
}

// waitStandIn forwards signals to the stand-in (our child) until it exits,
// and returns its status as runc would report it.
func waitStandIn(pid int, sigs <-chan os.Signal) int {
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
		done <- ws
	}()
	for {
		select {
		case s := <-sigs:
			syscall.Kill(pid, s.(syscall.Signal))
		case ws := <-done:
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// startError and createError word a failure of the workload as runc does,
// so clients (docker maps "executable file not found" to 127) behave the
// same.
func startError(err error) error { return workloadError("start container", err) }

func createError(err error) error { return workloadError("create container in vm", err) }

func workloadError(what string, err error) error {
	var re *agent.RemoteError
	if errors.As(err, &re) && re.Kind == agent.ErrKindExecutable {
		return fmt.Errorf("unable to start container process: %w", err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
