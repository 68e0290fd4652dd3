package clients

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dkrReload sends dockerd SIGHUP, as `systemctl reload docker` does, and
// waits until `docker info` lists (or no longer lists) runtime rt.
func dkrReload(t *testing.T, rt string, want bool) {
	t.Helper()
	b, err := os.ReadFile(clients().dockerPidFile)
	if err != nil {
		t.Fatalf("dockerd's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dockerd's pid file: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP dockerd %d: %v", pid, err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ := dkrCommand("info", "--format", "{{json .Runtimes}}").Output()
		if strings.Contains(string(out), `"`+rt+`"`) == want {
			return
		}
	}
	t.Fatalf("dockerd did not reload its runtimes (want %s listed: %v)", rt, want)
}

// TestDockerRuntimeAddedByReload: a runtime added to daemon.json while
// dockerd runs and loaded by SIGHUP (how users add runvirt to a running
// docker; docker 20.10 then gives it the root of runtime-runc) runs
// containers whose volume writes reach the host, and survives the
// stop/start cycle that a --root through /var/run used to break ("container
// with given ID already exists", a task and shim left per container).
func TestDockerRuntimeAddedByReload(t *testing.T) {
	requireDocker(t)
	// dockerd's config file, which setup-docker.sh writes.
	dkrDaemonJSON := clients().dockerDaemonJSON
	orig, err := os.ReadFile(dkrDaemonJSON)
	if err != nil {
		t.Fatal(err)
	}
	// The same entry under a second name.
	var conf map[string]any
	if err := json.Unmarshal(orig, &conf); err != nil {
		t.Fatalf("%s: %v", dkrDaemonJSON, err)
	}
	rts, _ := conf["runtimes"].(map[string]any)
	if rts["runvirt"] == nil {
		t.Fatalf("%s has no runtime runvirt to copy: %s", dkrDaemonJSON, orig)
	}
	rts["runvirt-reloaded"] = rts["runvirt"]
	added, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dkrDaemonJSON, added, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(dkrDaemonJSON, orig, 0o644)
		dkrReload(t, "runvirt-reloaded", false)
	})
	dkrReload(t, "runvirt-reloaded", true)

	data := t.TempDir()
	name := dkrName("hup")
	cid := dkrContainer(t, name)
	r := dkr(t, "", "run", "--runtime", "runvirt-reloaded", "--network", "none", "--rm", "--cidfile", cid, "--name", name,
		"-v", data+":/data", dkrImage, "sh", "-c", "echo kept > /data/f; exit 4")
	if r.code != 4 {
		t.Errorf("docker run: exit %d, want 4; stderr %s", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(data, "f")); string(got) != "kept\n" {
		t.Errorf("volume write: host sees %q, want %q", got, "kept\n")
	}

	name = dkrName("hupcycle")
	cid = dkrContainer(t, name)
	if r := dkr(t, "", "run", "-d", "--runtime", "runvirt-reloaded", "--network", "none", "--cidfile", cid, "--name", name,
		"-v", data+":/data", dkrImage, "sh", "-c", "echo up >> /data/log; while true; do sleep 1; done"); r.code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", r.code, r.stderr)
	}
	if r := dkr(t, "", "stop", "-t", "1", name); r.code != 0 {
		t.Fatalf("docker stop: exit %d: %s", r.code, r.stderr)
	}
	b, _ := os.ReadFile(cid)
	if left := dkrLeftInContainerd(strings.TrimSpace(string(b))); len(left) > 0 {
		t.Errorf("after docker stop, left in containerd: %v", left)
	}
	if r := dkr(t, "", "start", name); r.code != 0 {
		t.Fatalf("docker start after stop: exit %d: %s", r.code, r.stderr)
	}
	if r := dkr(t, "", "exec", name, "cat", "/data/log"); r.code != 0 || r.stdout != "up\nup\n" {
		t.Errorf("after stop and start: exec exit %d, /data/log %q; want two starts", r.code, r.stdout)
	}
	if r := dkr(t, "", "rm", "-f", name); r.code != 0 {
		t.Errorf("docker rm -f: exit %d: %s", r.code, r.stderr)
	}
}
