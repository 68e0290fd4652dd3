package clients

import (
	"strconv"
	"strings"
	"testing"
)

// memoryHog grows a shell variable until the kernel kills the shell.
const memoryHog = `a=x; while :; do a=$a$a; done`

// TestDockerLimitsVisible: what `docker run -m --pids-limit --cpus` sets is
// what the workload reads at /sys/fs/cgroup (its own cgroup namespace, as
// runc gives on a cgroup v2 host), and `docker update` shows there at once.
func TestDockerLimitsVisible(t *testing.T) {
	requireDocker(t)
	name := dkrName("limits")
	cid := dkrContainer(t, name)
	if r := dkr(t, "", dkrRun("-d", "--cidfile", cid, "--name", name, "-m", "64m", "--pids-limit", "20", "--cpus", "0.5",
		dkrImage, "sh", "-c", "echo ready; while true; do sleep 1; done")...); r.code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", r.code, r.stderr)
	}
	dkrWaitLogs(t, name, "ready", 1)
	read := func() string {
		t.Helper()
		r := dkr(t, "", "exec", name, "sh", "-c",
			`cat /proc/self/cgroup; for f in memory.max pids.max cpu.max; do echo "$f=$(cat /sys/fs/cgroup/$f)"; done; `+
				`test -r /sys/fs/cgroup/memory.current && echo current-ok; [ -n "$(cat /sys/fs/cgroup/cpuset.cpus.effective)" ] && echo cpuset-ok`)
		if r.code != 0 {
			t.Fatalf("docker exec: exit %d: %s", r.code, r.stderr)
		}
		return r.stdout
	}
	out := read()
	for _, want := range []string{"0::/", "memory.max=67108864", "pids.max=20", "cpu.max=50000 100000", "current-ok", "cpuset-ok"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the container read %q, want %q in it", out, want)
		}
	}
	if r := dkr(t, "", "update", "-m", "96m", "--memory-swap", "96m", "--pids-limit", "30", name); r.code != 0 {
		t.Fatalf("docker update: exit %d: %s", r.code, r.stderr)
	}
	out = read()
	for _, want := range []string{"memory.max=100663296", "pids.max=30"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("after docker update the container read %q, want %q in it", out, want)
		}
	}
	// docker top: the container's host processes (its stand-ins), never
	// host processes that happen to have the guest's pids.
	pid := dkrInspect(t, name, "{{.State.Pid}}")
	r := dkr(t, "", "top", name, "-o", "pid,args")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) < 2 {
		t.Errorf("docker top: exit %d, %q", r.code, r.stdout)
	}
	found := false
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		found = found || (len(f) > 0 && f[0] == pid)
		if !strings.Contains(l, " stand-in ") {
			t.Errorf("docker top shows a process that is not the container's: %q", l)
		}
	}
	if !found {
		t.Errorf("docker top does not show the container's pid %s: %q", pid, r.stdout)
	}
	if r := dkr(t, "", "rm", "-f", name); r.code != 0 {
		t.Errorf("docker rm -f: exit %d: %s", r.code, r.stderr)
	}
}

// TestDockerOOMKilled: a container whose init the guest's OOM killer kills
// exits 137 and docker says OOMKilled, as with runc; one that exits on its
// own after a child of it was OOM-killed is OOMKilled too (docker marks any
// OOM event of the task), and one without any OOM kill is not.
func TestDockerOOMKilled(t *testing.T) {
	requireDocker(t)
	for _, c := range []struct {
		name, script string
		code         int
		oom          string
	}{
		{"oom", memoryHog, 137, "true"},
		{"childoom", "sh -c '" + memoryHog + "'; echo child=$?", 0, "true"},
		{"nooom", "exit 3", 3, "false"},
	} {
		name := dkrName(c.name)
		cid := dkrContainer(t, name)
		r := dkr(t, "", dkrRun("--cidfile", cid, "--name", name, "-m", "32m", "--memory-swap", "32m", dkrImage, "sh", "-c", c.script)...)
		if r.code != c.code {
			t.Errorf("%s: exit %d, want %d: %s", c.name, r.code, c.code, r.stderr)
		}
		if got := dkrInspect(t, name, "{{.State.OOMKilled}} {{.State.ExitCode}}"); got != c.oom+" "+itoa(c.code) {
			t.Errorf("%s: docker inspect says OOMKilled, ExitCode = %q, want %q", c.name, got, c.oom+" "+itoa(c.code))
		}
		dkr(t, "", "rm", name)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
