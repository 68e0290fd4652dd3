package clients

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDockerStateLikeRunc: what docker reads of a container's end (its exit
// code in `docker run`, `docker wait`, `docker inspect`, `docker ps`), after
// the events users cause every day, is the same for runvirt as for runc on
// the same daemon: an exit code; a SIGTERM trapped by `docker stop`; the
// workload killed by a signal under --init; a SIGTERM that a pid-1 without
// a handler ignores; `docker restart` of a running container; `docker kill`;
// a restart policy that restarts a failing container twice.
func TestDockerStateLikeRunc(t *testing.T) {
	requireDocker(t)
	// The reference is Debian's runc 1.1, which refuses every container of
	// engine 29: its specs ask for a time namespace runc 1.1 does not know.
	skipUnlessDebian(t, "the reference runtime, Debian's runc 1.1, cannot run engine 29's containers (\"namespace time does not exist\")")
	got := map[string][]string{}
	for _, rt := range []string{"runc", "runvirt"} {
		got[rt] = dkrStateFacts(t, rt)
	}
	for i := range got["runc"] {
		if i >= len(got["runvirt"]) || got["runvirt"][i] != got["runc"][i] {
			t.Errorf("runc: %q\nrunvirt: %q", got["runc"][i:], got["runvirt"][min(i, len(got["runvirt"])):])
			return
		}
	}
}

// dkrStateFacts runs the scenarios of TestDockerStateLikeRunc with runtime
// rt and returns what docker said, one fact a line.
func dkrStateFacts(t *testing.T, rt string) []string {
	var facts []string
	run := func(name string, args ...string) cmdResult {
		t.Helper()
		cid := dkrContainer(t, name)
		return dkr(t, "", append([]string{"run", "--runtime", rt, "--network", "none", "--cidfile", cid, "--name", name}, args...)...)
	}
	state := func(what, name string) {
		t.Helper()
		s := dkrInspect(t, name, "{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}} oom={{.State.OOMKilled}} error={{.State.Error}}")
		running := dkrInspect(t, name, "{{.State.Pid}} {{.State.FinishedAt}}")
		pid, finished, _ := strings.Cut(running, " ")
		// A running container has a pid; an exited one has none, and when.
		facts = append(facts, fmt.Sprintf("%s: %s pid-set=%v finished-set=%v", what, s, pid != "0", !strings.HasPrefix(finished, "0001-")))
	}
	ps := func(what, name string) {
		t.Helper()
		out, _ := dkrCommand("ps", "-a", "--filter", "name=^"+name+"$", "--format", "{{.Status}}").Output()
		s := strings.TrimSpace(string(out))
		if i := strings.Index(s, ")"); strings.HasPrefix(s, "Exited (") && i > 0 {
			s = s[:i+1] // the time since varies
		} else if strings.HasPrefix(s, "Up ") {
			s = "Up"
		}
		facts = append(facts, what+": docker ps: "+s)
	}
	wait := func(what, name string) {
		t.Helper()
		r := dkr(t, "", "wait", name)
		facts = append(facts, fmt.Sprintf("%s: docker wait: %s (exit %d)", what, strings.TrimSpace(r.stdout), r.code))
	}
	waitRunning := func(name string) {
		t.Helper()
		if !waitFor(30*time.Second, func() bool { return dkrInspect(t, name, "{{.State.Status}}") == "running" }) {
			t.Fatalf("%s never ran", name)
		}
	}
	rm := func(name string) {
		t.Helper()
		if r := dkr(t, "", "rm", "-f", name); r.code != 0 {
			t.Errorf("docker rm -f %s: exit %d: %s", name, r.code, r.stderr)
		}
	}

	// An exit code.
	n := dkrName(rt + "-exit")
	facts = append(facts, fmt.Sprintf("exit 3: docker run: %d", run(n, dkrImage, "sh", "-c", "exit 3").code))
	state("exit 3", n)
	wait("exit 3", n)
	ps("exit 3", n)
	rm(n)

	// docker stop: the workload traps SIGTERM and exits 5; docker wait,
	// started before, says so too.
	n = dkrName(rt + "-term")
	run(n, "-d", dkrImage, "sh", "-c", `trap "echo got-term; exit 5" TERM; echo ready; while true; do sleep 0.2; done`)
	dkrWaitLogs(t, n, "ready", 1)
	state("running", n)
	ps("running", n)
	waited := make(chan string, 1)
	go func() {
		out, err := dkrCommand("wait", n).Output()
		waited <- fmt.Sprintf("%s %v", strings.TrimSpace(string(out)), err)
	}()
	time.Sleep(500 * time.Millisecond) // docker wait is waiting
	if r := dkr(t, "", "stop", "-t", "10", n); r.code != 0 {
		t.Fatalf("docker stop: exit %d: %s", r.code, r.stderr)
	}
	facts = append(facts, "stop, TERM trapped: docker wait during stop: "+<-waited)
	state("stop, TERM trapped", n)
	ps("stop, TERM trapped", n)

	// docker start, then docker restart of the running container, then
	// docker kill (SIGKILL).
	if r := dkr(t, "", "start", n); r.code != 0 {
		t.Fatalf("docker start: exit %d: %s", r.code, r.stderr)
	}
	waitRunning(n)
	state("start after stop", n)
	if r := dkr(t, "", "restart", "-t", "10", n); r.code != 0 {
		t.Fatalf("docker restart: exit %d: %s", r.code, r.stderr)
	}
	state("restart", n)
	dkrWaitLogs(t, n, "ready", 3)
	if r := dkr(t, "", "kill", n); r.code != 0 {
		t.Fatalf("docker kill: exit %d: %s", r.code, r.stderr)
	}
	wait("kill", n)
	state("kill", n)
	rm(n)

	// A signal kills the workload; docker-init reports it as 128+n.
	n = dkrName(rt + "-segv")
	facts = append(facts, fmt.Sprintf("--init, SIGSEGV: docker run: %d", run(n, "--init", dkrImage, "sh", "-c", "kill -SEGV $$").code))
	state("--init, SIGSEGV", n)
	rm(n)

	// A pid 1 without a handler is not killed by SIGTERM or SIGINT.
	n = dkrName(rt + "-pid1")
	run(n, "-d", dkrImage, "sleep", "1000")
	waitRunning(n)
	for _, sig := range []string{"TERM", "INT"} {
		if r := dkr(t, "", "kill", "-s", sig, n); r.code != 0 {
			t.Fatalf("docker kill -s %s: exit %d: %s", sig, r.code, r.stderr)
		}
	}
	time.Sleep(2 * time.Second)
	state("pid 1 sent TERM and INT", n)
	rm(n)

	// A restart policy: two restarts, then the last exit code.
	n = dkrName(rt + "-policy")
	run(n, "-d", "--restart", "on-failure:2", dkrImage, "sh", "-c", "echo run; exit 3")
	waitFor(60*time.Second, func() bool {
		return dkrInspect(t, n, "{{.State.Status}} {{.RestartCount}}") == "exited 2"
	})
	time.Sleep(time.Second) // no third run comes
	state("on-failure:2, exit 3", n)
	ps("on-failure:2, exit 3", n)
	out, _ := dkrCommand("logs", n).Output()
	facts = append(facts, fmt.Sprintf("on-failure:2, exit 3: runs: %d", strings.Count(string(out), "run\n")))
	rm(n)
	return facts
}
