package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestFacts is what the template test's workload prints about its VM.
type guestFacts struct{ boot, random, now string }

const factsScript = `echo "boot=$(cat /proc/sys/kernel/random/boot_id) random=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') now=$(date +%s)"`

func parseFacts(t *testing.T, line string) guestFacts {
	t.Helper()
	var f guestFacts
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "boot":
			f.boot = v
		case "random":
			f.random = v
		case "now":
			f.now = v
		}
	}
	if len(f.boot) != 36 || len(f.random) != 32 || f.now == "" {
		t.Fatalf("workload printed %q, want boot=UUID random=HEX now=SECONDS", line)
	}
	return f
}

// checkClock fails unless the guest's clock (unix seconds) is the host's.
func checkClock(t *testing.T, now string) {
	t.Helper()
	s, err := strconv.ParseInt(now, 10, 64)
	if err != nil {
		t.Fatalf("guest time %q: %v", now, err)
	}
	if d := time.Since(time.Unix(s, 0)); d < -5*time.Second || d > 30*time.Second {
		t.Errorf("guest clock is %s off the host's", d.Round(time.Second))
	}
}

// Sandboxes started from a template: the first sandbox of a configuration
// boots and saves the template, later ones restore copies of it. Each copy
// is a VM of its own (boot id, random state, clock, its spare NIC's MAC),
// mounts its own share after the restore, runs its workload and exec, and
// leaves nothing behind.
func TestTemplate(t *testing.T) {
	tmplDir := t.TempDir()
	e := newEnv(t, withTemplate(tmplDir)) // late_network on: each VM has its spare NIC
	hostBoot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	out := t.TempDir()
	e.spec.Mounts = append(e.spec.Mounts, specs.Mount{Destination: "/mnt/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})

	// The first sandbox makes the template, then starts from it.
	r := e.runArgs("tmpl-first", "sh", "-c", factsScript+"; echo written > /mnt/out/first; exit 5")
	if r.code != 5 {
		t.Fatalf("first run: exit %d, want 5 (stderr %q)", r.code, r.stderr)
	}
	first := parseFacts(t, r.stdout)
	checkClock(t, first.now)
	if b, err := os.ReadFile(filepath.Join(out, "first")); err != nil || string(b) != "written\n" {
		t.Errorf("the workload's write to the bind mount: %q, %v", b, err)
	}
	saved, _ := filepath.Glob(filepath.Join(tmplDir, "*", "state"))
	if len(saved) != 1 {
		t.Fatalf("templates saved under %s: %v, want one", tmplDir, saved)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(saved[0]), "ram")); err != nil {
		t.Fatalf("template without its RAM: %v", err)
	}

	// Two copies at once.
	e.spec.Process.Args = []string{"sh", "-c", factsScript + "; sleep 600"}
	facts := map[string]guestFacts{}
	for _, id := range []string{"tmpl-a", "tmpl-b"} {
		_, stdout, _ := e.create(id)
		defer stdout.Close()
		e.mustRun("start", id)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("%s printed nothing: %v", id, err)
		}
		facts[id] = parseFacts(t, line)
		checkClock(t, facts[id].now)
		mon, _ := os.ReadFile(filepath.Join(e.root, id, "monitor.log"))
		if !strings.Contains(string(mon), "vm restored from a template") {
			t.Errorf("%s was not restored from the template; monitor log:\n%s", id, mon)
		}
		// exec runs in the same copy.
		if got := strings.TrimSpace(e.mustRun("exec", id, "cat", "/proc/sys/kernel/random/boot_id")); got != facts[id].boot {
			t.Errorf("%s: exec sees boot id %s, the workload %s", id, got, facts[id].boot)
		}
	}
	a, b := facts["tmpl-a"], facts["tmpl-b"]
	for _, f := range []guestFacts{first, a, b} {
		if f.boot == strings.TrimSpace(string(hostBoot)) {
			t.Error("a guest has the host's boot id")
		}
	}
	if a.boot == b.boot || a.boot == first.boot || b.boot == first.boot {
		t.Errorf("copies share a boot id: %s %s %s", first.boot, a.boot, b.boot)
	}
	if a.random == b.random || a.random == first.random || b.random == first.random {
		t.Errorf("copies draw the same random bytes: %s %s %s", first.random, a.random, b.random)
	}
	for _, id := range []string{"tmpl-a", "tmpl-b"} {
		e.mustRun("kill", id, "KILL")
		e.waitStatus(id, "stopped", 30*time.Second)
		e.mustRun("delete", id)
	}
}

// A template with virtio-fs is refused with the reason, before anything
// is made.
func TestTemplateNeeds9p(t *testing.T) {
	e := newEnv(t)
	e.appendConfig("template = true\n")
	e.spec.Process.Args = []string{"true"}
	e.writeSpec()
	r := e.run("", "run", "--bundle", e.bundle, "tmpl-vfs")
	if r.code == 0 || !strings.Contains(r.stderr, "template: needs shared_fs") {
		t.Errorf("run with template and virtio-fs: exit %d, stderr %q", r.code, r.stderr)
	}
}
