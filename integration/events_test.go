package integration

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// eventLine is one line of `runvirt events` and when it came.
type eventLine struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	at   time.Time
	raw  string
}

// eventStream runs `runvirt events` with args in the background. Its lines
// come on lines, which is closed when the command's output ends; done then
// gets the command's result.
type eventStream struct {
	cmd   *exec.Cmd
	lines chan eventLine
	done  chan error
}

func (e *env) startEvents(args ...string) *eventStream {
	e.t.Helper()
	cmd := e.command(append([]string{"events"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	s := &eventStream{cmd: cmd, lines: make(chan eventLine, 64), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := eventLine{at: time.Now(), raw: sc.Text()}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				e.t.Errorf("events printed a line that is not JSON: %q", sc.Text())
			}
			s.lines <- l
		}
		close(s.lines)
		s.done <- cmd.Wait()
	}()
	e.t.Cleanup(func() { cmd.Process.Kill() }) // if it still runs
	return s
}

// next is the stream's next line of type typ, skipping others, or false if
// none came before the deadline or the stream ended.
func (s *eventStream) next(t *testing.T, typ string, deadline time.Time) (eventLine, bool) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return eventLine{}, false
			}
			logEvent(t, l)
			if l.Type == typ {
				return l, true
			}
		case <-timer.C:
			return eventLine{}, false
		}
	}
}

// logEvent logs a line of events, a stats line only by its type.
func logEvent(t *testing.T, l eventLine) {
	t.Helper()
	if l.Type == "stats" {
		t.Logf("events: a stats event")
		return
	}
	t.Logf("events: %s", l.raw)
}

// rest is every line until the stream ends, and whether it ended (with the
// command's result) before the deadline.
func (s *eventStream) rest(t *testing.T, deadline time.Time) (lines []eventLine, ended bool, err error) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return lines, true, <-s.done
			}
			logEvent(t, l)
			lines = append(lines, l)
		case <-timer.C:
			return lines, false, nil
		}
	}
}

// TestEventsOOMKillEndsContainer: `runvirt events` (default 5 s interval)
// listens while the init of a 32 MiB container becomes a memory hog and is
// OOM-killed at once, well before the next stats poll. The stream must
// carry exactly one runc-shaped oom event, and end when the container
// stops.
func TestEventsOOMKillEndsContainer(t *testing.T) {
	e := newEnv(t)
	limit := int64(32 << 20)
	e.spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	e.spec.Process.Args = []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; " + memoryHog}
	pid, _, _ := e.create("evoom")
	e.mustRun("start", "evoom")
	ev := e.startEvents("evoom")
	if _, ok := ev.next(t, "stats", time.Now().Add(30*time.Second)); !ok {
		t.Fatal("no first stats event")
	}
	e.mustRun("exec", "evoom", "touch", "/tmp/go")
	ws := reapStandIn(t, pid, 60*time.Second)
	if ws.ExitStatus() != 137 && ws.Signal() != syscall.SIGKILL {
		t.Errorf("stand-in: %v, want exit 137 or SIGKILL (the init was not oom-killed)", ws)
	}
	lines, ended, err := ev.rest(t, time.Now().Add(30*time.Second))
	if !ended {
		t.Error("events still runs 30 s after the container stopped")
	} else if err != nil {
		t.Errorf("events: %v", err)
	}
	ooms := 0
	for _, l := range lines {
		if l.Type == "oom" {
			ooms++
			if l.raw != `{"type":"oom","id":"evoom"}` {
				t.Errorf("oom event %q, want runc's {\"type\":\"oom\",\"id\":\"evoom\"}", l.raw)
			}
		}
	}
	if ooms != 1 {
		t.Errorf("%d oom events after the init was oom-killed, want 1", ooms)
	}
	e.mustRun("delete", "--force", "evoom")
}

// TestEventsChildOOMAtOnce: with a 30 s stats interval, a child OOM-killed
// while the init carries on is reported within seconds (only the OOM check,
// not the stats poll, can deliver it), the container keeps running, and the
// stream ends once the container is deleted.
func TestEventsChildOOMAtOnce(t *testing.T) {
	e := newEnv(t)
	limit := int64(32 << 20)
	e.spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	e.spec.Process.Args = []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; " +
		"sh -c '" + memoryHog + "'; exec sleep 600"}
	pid, _, _ := e.create("evchild")
	e.mustRun("start", "evchild")
	ev := e.startEvents("--interval", "30s", "evchild")
	if _, ok := ev.next(t, "stats", time.Now().Add(30*time.Second)); !ok {
		t.Fatal("no first stats event")
	}
	e.mustRun("exec", "evchild", "touch", "/tmp/go")
	touched := time.Now()
	l, ok := ev.next(t, "oom", touched.Add(3*time.Second))
	if !ok {
		t.Fatal("no oom event within 3 s of the child's oom kill")
	}
	t.Logf("oom event %s after the go-ahead", l.at.Sub(touched).Round(time.Millisecond))
	if l.raw != `{"type":"oom","id":"evchild"}` {
		t.Errorf("oom event %q, want runc's shape", l.raw)
	}
	if st, _ := e.state("evchild"); st.Status != "running" {
		t.Errorf("after the child's oom kill the container is %q, want running", st.Status)
	}
	e.mustRun("delete", "--force", "evchild")
	reapStandIn(t, pid, 30*time.Second)
	lines, ended, err := ev.rest(t, time.Now().Add(30*time.Second))
	if !ended {
		t.Error("events still runs 30 s after the container was deleted")
	} else if err != nil {
		t.Errorf("events: %v", err)
	}
	for _, l := range lines {
		if l.Type == "oom" {
			t.Errorf("a second oom event %q for one kill", l.raw)
		}
	}
}
