package clients

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDockerStatsCountTheVM: `docker stats` of a runvirt container reads
// the container's host cgroup (the runc shim's view; docs/limits-and-oom.md
// says what each number is), and its memory there is what the VM costs the
// host: at least the anonymous and shared memory QEMU has resident. A VM
// moved into the cgroup only after its boot left most of that charged to the
// shim's cgroup (~40 MiB shown for a QEMU of ~190 MiB).
func TestDockerStatsCountTheVM(t *testing.T) {
	requireDocker(t)
	name := dkrName("stats")
	cid := dkrContainer(t, name)
	if r := dkr(t, "", dkrRun("-d", "--cidfile", cid, "--name", name, "-m", "64m", dkrImage, "sh", "-c",
		`a=$(head -c 20000000 /dev/zero | tr "\0" x); echo ready; while true; do sleep 1; done`)...); r.code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", r.code, r.stderr)
	}
	dkrWaitLogs(t, name, "ready", 1)
	id := dkrInspect(t, name, "{{.Id}}")
	qemu := dkrQEMUOf(t, id)
	r := dkr(t, "", "stats", "--no-stream", "--format", "{{.MemUsage}}", name)
	if r.code != 0 {
		t.Fatalf("docker stats: exit %d: %s", r.code, r.stderr)
	}
	usage, err := parseDockerSize(strings.TrimSpace(strings.Split(r.stdout, "/")[0]))
	if err != nil {
		t.Fatalf("docker stats: %q: %v", r.stdout, err)
	}
	resident := procStatusKB(t, qemu, "RssAnon") + procStatusKB(t, qemu, "RssShmem")
	t.Logf("docker stats: %d KiB; QEMU (pid %d) RssAnon+RssShmem: %d KiB", usage>>10, qemu, resident)
	if usage>>10 < resident*9/10 {
		t.Errorf("docker stats shows %d KiB of memory, less than the %d KiB QEMU has resident: the VM is charged elsewhere", usage>>10, resident)
	}
	if r := dkr(t, "", "rm", "-f", name); r.code != 0 {
		t.Errorf("docker rm -f: exit %d: %s", r.code, r.stderr)
	}
}

// dkrQEMUOf finds the QEMU process of container id's sandbox.
func dkrQEMUOf(t *testing.T, id string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, "-name runvirt-"+id+" ") {
			return pid
		}
	}
	t.Fatalf("no QEMU process for %s", id)
	return 0
}

// procStatusKB reads a "kB" field of /proc/PID/status.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// parseDockerSize reads a size as docker's CLI prints it ("38.75MiB").
func parseDockerSize(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("parse size %q: %w", s, err)
			}
			return int64(f * u.mult), nil
		}
	}
	return 0, fmt.Errorf("parse size %q: no unit", s)
}
