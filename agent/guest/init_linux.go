package guest

// A container init is set up at create and started later, as runc does: its
// child stops short of execve (runc's blocks on its exec fifo). Once the
// container is set up and the executable found it reports {"stage":"ready"}
// and blocks reading one byte from a third pipe (fd 7). So every setup error
// surfaces at create, where clients expect it, and start only releases the
// child; an error of execve itself still comes at start.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init is a container init that SpawnInit has set up and left waiting just
// before execve: its namespaces, mounts, root, devices, hostname, credentials
// and limits are in place and its executable has been found. Start lets it
// exec the workload.
type Init struct {
	// Process is the init; the caller reaps it (see SpawnInit).
	Process *os.Process
	// Console is the master of the init's pty when its process has a
	// terminal, nil otherwise. The caller owns it.
	Console *os.File

	start   *os.File // write end of the start pipe
	repR    *os.File
	reports *reportReader
}

// spawnInitChild starts an init child, passing it the start pipe's read end,
// and waits until it is set up or has failed.
// podNS are the sandbox's pid and mount namespaces for an init that shares
// the former (nil otherwise).
func spawnInitChild(cfg *childConfig, stdio Stdio, sys *syscall.SysProcAttr, cg *os.File, podNS []*os.File) (*Init, error) {
	startR, startW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start pipe: %w", err)
	}
	ch, err := startChild(childInitArg, cfg, stdio, sys, cg, nil, startR, podNS...)
	startR.Close()
	if err != nil {
		startW.Close()
		return nil, err
	}
	defer ch.closeConsoleSock()
	init := &Init{Process: ch.proc, start: startW, repR: ch.repR, reports: ch.reports}
	pid, err := ch.reports.untilReady()
	if err != nil {
		// The child exits by itself after reporting; kill covers a child
		// that got stuck.
		_ = ch.proc.Kill()
		init.Close()
		return nil, err
	}
	if pid > 0 {
		// The workload, forked stopped in the pod's pid namespace: the
		// container's process from now on (see podpid_linux.go).
		if init.Process, err = os.FindProcess(pid); err != nil {
			_ = ch.proc.Kill()
			init.Close()
			return nil, fmt.Errorf("find init workload %d: %w", pid, err)
		}
	}
	// The child sent the master before its ready report.
	if init.Console, err = ch.console(); err != nil {
		_ = ch.proc.Kill()
		init.Close()
		return nil, err
	}
	return init, nil
}

// Start releases the init to exec its workload and returns once it has, or
// failed to (an ExecError for execve's own failure). Start is called once.
func (i *Init) Start() error {
	defer i.Close()
	// One byte, then EOF: the child needs only the byte.
	_, err := i.start.Write([]byte{0})
	if err != nil {
		// EPIPE: the child is gone; its reports say why, if it could.
		if rerr := i.reports.untilExec(); rerr != nil {
			return rerr
		}
		return fmt.Errorf("release container init: %w", err)
	}
	i.start.Close()
	return i.reports.untilExec()
}

// Close drops the agent's ends of the init's pipes; an init still waiting
// then exits without running its workload. It does not close Console.
func (i *Init) Close() {
	i.start.Close()
	i.repR.Close()
}

// awaitStart runs in the child: it blocks until the parent sends the start
// byte. EOF instead means the agent dropped the container before start: the
// child exits (status 1, no report) without running the workload.
func awaitStart() error {
	var b [1]byte
	for {
		n, err := unix.Read(childStartFd, b[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for start: %w", err)
		}
		if n == 0 {
			os.Exit(1)
		}
		return nil
	}
}

// reportReader reads a child's reports. One reader serves an init's whole
// life: the decoder may have read ahead.
type reportReader struct {
	dec *json.Decoder
}

func newReportReader(r io.Reader) *reportReader {
	return &reportReader{dec: json.NewDecoder(io.LimitReader(r, maxReportSize))}
}

// next returns the child's next report, io.EOF once the pipe is closed, or
// the error the child reported.
func (r *reportReader) next() (childReport, error) {
	var rep childReport
	err := r.dec.Decode(&rep)
	if errors.Is(err, io.EOF) {
		return rep, io.EOF
	}
	if err != nil {
		return rep, fmt.Errorf("read child report: %w", err)
	}
	if rep.Error != "" {
		return rep, reportError(rep)
	}
	return rep, nil
}

// untilReady reads an init's reports up to its ready report: no error once
// the child is set up and waits for its start byte. The pid is that of the
// workload the child forked stopped, 0 when the child itself will be it.
func (r *reportReader) untilReady() (int, error) {
	for {
		rep, err := r.next()
		if errors.Is(err, io.EOF) {
			return 0, errors.New("container process exited before it was set up")
		}
		if err != nil {
			return 0, err
		}
		if rep.Stage == stageReady {
			return rep.Pid, nil
		}
	}
}

// untilForked reads an exec child's reports up to the one that gives the
// pid of the workload it forked (running by then). It stops there, not at
// EOF: nothing the child's pipe carries afterwards can change the verdict.
func (r *reportReader) untilForked() (int, error) {
	for {
		rep, err := r.next()
		if errors.Is(err, io.EOF) {
			return 0, errors.New("container process exited before exec")
		}
		if err != nil {
			return 0, err
		}
		if rep.Stage == stageExec && rep.Pid > 0 {
			return rep.Pid, nil
		}
	}
}

// untilExec reads the child's reports until EOF and turns them into the
// child's verdict: nil once the child reached execve and the pipe closed.
func (r *reportReader) untilExec() error {
	execing := false
	for {
		rep, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if rep.Stage == stageExec {
			execing = true
		}
	}
	if !execing {
		return errors.New("container process exited before exec")
	}
	return nil
}
