package guest

import (
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper is PID 1's zombie collector. Every child of the agent is reaped here
// with wait4(-1); processes the server started are registered so their exit
// status reaches the waiter. A child can exit before it is registered, so
// unclaimed statuses are kept for a while.
type reaper struct {
	mu        sync.Mutex
	waiters   map[int]chan int // guarded by mu
	unclaimed map[int]exitNote // guarded by mu
}

type exitNote struct {
	status int
	at     time.Time
}

// unclaimedTTL bounds how long the status of an unregistered child is kept.
const unclaimedTTL = time.Minute

func newReaper() *reaper {
	return &reaper{waiters: map[int]chan int{}, unclaimed: map[int]exitNote{}}
}

// Lock and Unlock bracket a spawn: hold the lock from before the process is
// created until Register, so the exit of a short-lived process is never
// dispatched before its waiter exists.
func (r *reaper) Lock()   { r.mu.Lock() }
func (r *reaper) Unlock() { r.mu.Unlock() }

// registerLocked returns a channel that receives pid's exit status once.
// The caller holds the lock.
func (r *reaper) registerLocked(pid int) <-chan int {
	ch := make(chan int, 1)
	if n, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		ch <- n.status
		return ch
	}
	r.waiters[pid] = ch
	return ch
}

// run reaps children until the process ends.
func (r *reaper) run() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD)
	for range sigs {
		r.reapAll()
	}
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.dispatch(pid, exitStatus(ws))
	}
}

func (r *reaper) dispatch(pid, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[pid]; ok {
		delete(r.waiters, pid)
		ch <- status
		return
	}
	now := time.Now()
	for p, n := range r.unclaimed {
		if now.Sub(n.at) > unclaimedTTL {
			delete(r.unclaimed, p)
		}
	}
	r.unclaimed[pid] = exitNote{status: status, at: now}
}

// exitStatus maps a wait status the way runc reports it: the exit code, or
// 128+N for a process killed by signal N.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
