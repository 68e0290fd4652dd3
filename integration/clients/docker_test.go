package clients

// The docker tests drive Debian's docker as its package sets it up (see
// setup-docker.sh): the system containerd with its defaults, dockerd with
// its default socket, data root and exec root (/var/run/docker, through the
// /var/run -> /run symlink), and runvirt as the runtime "runvirt" of
// /etc/docker/daemon.json; and a locally built busybox image. With
// RUNVIRT_CLIENTS=current the same tests drive the docker engine 29 on a
// containerd 2 of its own, with paths of their own (clientset_test.go). They need what
// the containerd tests need (root, QEMU, `make`) and skip, or fail under
// RUNVIRT_REQUIRE_INTEGRATION=1, without it. Every container boots a VM: the
// tests keep the boots few. After each container, and once at the end, no
// task or shim of dockerd's may be left in containerd.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const dkrImage = "runvirt-busybox:latest"

// dkrCtr runs ctr against dockerd's containerd, in docker's namespace.
func dkrCtr(args ...string) *exec.Cmd {
	return exec.Command(clients().ctrPath(), append([]string{"--address", clients().dockerContainerd, "--namespace", "moby"}, args...)...)
}

// dkrLeftInContainerd lists what of container id (every container if id is
// "") dockerd left in containerd: tasks, and runc shims serving docker's
// namespace.
func dkrLeftInContainerd(id string) []string {
	return leftInContainerd(dkrCtr("tasks", "ls", "-q"), "moby", func(s string) bool { return id == "" || s == id })
}

// requireDocker sets up docker (once) and skips or fails as clientSetup.require does.
func requireDocker(t *testing.T) {
	t.Helper()
	dkrSock = dkrSetup.require(t)
}

func dkrCommand(args ...string) *exec.Cmd {
	return exec.Command("docker", append([]string{"-H", "unix://" + dkrSock}, args...)...)
}

// dkr runs `docker ARGS...` to completion with the given stdin (none if "").
func dkr(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, dkrCommand(args...), stdin)
}

// dkrTTY runs `docker ARGS...` on a new pty through the steps of runOnTTY.
func dkrTTY(t *testing.T, rows, cols uint16, steps []ttyStep, args ...string) (string, int) {
	t.Helper()
	return runOnTTY(t, dkrCommand(args...), rows, cols, steps)
}

// dkrName is a container name unique to this run.
func dkrName(name string) string {
	return fmt.Sprintf("rv-%s-%d", name, time.Now().UnixNano()%1000000)
}

// dkrContainer registers cleanup for the container that `docker run
// --cidfile FILE --name name` creates and returns the --cidfile to pass. At
// the end it removes the container if the test left it, then fails the test
// if anything of it survived: a container in dockerd, a task in dockerd's
// containerd, runvirt's state, a host process (monitor, QEMU, virtiofsd,
// stand-in).
func dkrContainer(t *testing.T, name string) string {
	cidfile := filepath.Join(t.TempDir(), "cid")
	t.Cleanup(func() {
		b, _ := os.ReadFile(cidfile)
		id := strings.TrimSpace(string(b))
		if dkrCommand("container", "inspect", name).Run() == nil {
			t.Errorf("container %s left behind", name)
			dkrCommand("rm", "-f", name).Run()
		}
		if id == "" {
			return
		}
		var state []string
		for _, rt := range []string{"runtime-runc", "runtime-runvirt", "runtime-runvirt-reloaded"} {
			state = append(state, filepath.Join(clients().dockerExecRoot, rt, "moby", id))
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			procs := append(dkrProcsOf(id), dkrLeftInContainerd(id)...)
			var left []string
			for _, s := range state {
				if ctrdExists(s) {
					left = append(left, s)
				}
			}
			if len(procs) == 0 && len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				if len(procs) > 0 {
					t.Errorf("processes left behind: %v", procs)
				}
				if len(left) > 0 {
					t.Errorf("runvirt state left behind: %v", left)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return cidfile
}

// dkrProcsOf lists the host processes of the sandbox of container id (a
// shim that dockerd failed to delete included).
func dkrProcsOf(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		if _, err := strconv.Atoi(en.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "/moby/"+id) || strings.Contains(cl, "-name runvirt-"+id+" ") ||
			strings.Contains(cl, " monitor "+id) || strings.Contains(cl, " stand-in "+id) ||
			strings.Contains(cl, "-id "+id+" ") {
			out = append(out, en.Name()+":"+cl)
		}
	}
	return out
}

// dkrRun is `docker run --runtime runvirt --network none` plus args.
func dkrRun(args ...string) []string {
	return append([]string{"run", "--runtime", "runvirt", "--network", "none"}, args...)
}

// dkrWaitLogs waits until `docker logs name` shows want (count times).
func dkrWaitLogs(t *testing.T, name, want string, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var out []byte
	for time.Now().Before(deadline) {
		out, _ = dkrCommand("logs", name).CombinedOutput()
		if strings.Count(string(out), want) >= count {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("docker logs %s: %q never showed %q %d times", name, out, want, count)
}

func dkrInspect(t *testing.T, name, format string) string {
	t.Helper()
	out, err := dkrCommand("inspect", "-f", format, name).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// TestDockerRun: `docker run --runtime runvirt --rm -i`: stdin, stdout and
// stderr kept apart, the exit status, a guest kernel, nothing left behind.
func TestDockerRun(t *testing.T) {
	requireDocker(t)
	name := dkrName("run")
	cid := dkrContainer(t, name)
	r := dkr(t, "piped\n", dkrRun("--rm", "-i", "--cidfile", cid, "--name", name, dkrImage,
		"sh", "-c", `read x; echo "got $x"; echo to-stderr >&2; cat /proc/sys/kernel/random/boot_id; exit 3`)...)
	if r.code != 3 {
		t.Errorf("exit status %d, want 3; stderr: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "got piped" {
		t.Fatalf("stdout %q, want \"got piped\" and a boot id", r.stdout)
	}
	if lines[1] == hostBootID(t) {
		t.Errorf("the container ran on the host's kernel (boot id %s)", lines[1])
	}
	if strings.TrimSpace(r.stderr) != "to-stderr" {
		t.Errorf("stderr %q, want \"to-stderr\" alone", r.stderr)
	}
	if dkrCommand("container", "inspect", name).Run() == nil {
		t.Errorf("--rm left the container")
	}
}

// TestDockerRunMissingExecutable: docker turns the runtime's error text into
// 127, as with runc, and a container whose start failed is removed whole
// (dockerd deletes it at once; runvirt's stand-in must be gone by then).
func TestDockerRunMissingExecutable(t *testing.T) {
	requireDocker(t)
	for _, c := range []struct{ exe, want string }{
		{"nosuchcmd", `exec: "nosuchcmd": executable file not found in $PATH`},
		{"/nonexistent", `stat /nonexistent: no such file or directory`},
	} {
		name := dkrName("noexe")
		cid := dkrContainer(t, name)
		r := dkr(t, "", dkrRun("--rm", "--cidfile", cid, "--name", name, dkrImage, c.exe)...)
		if r.code != 127 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 127 and %q", c.exe, r.code, r.stderr, c.want)
		}
	}
}

// TestDockerRunTTY: `docker run -it`: an interactive shell on a terminal of
// the caller's size; a resize reaches the guest; the exit status comes back.
func TestDockerRunTTY(t *testing.T) {
	requireDocker(t)
	name := dkrName("tty")
	cid := dkrContainer(t, name)
	// The typed commands come back as the terminal's echo: the words to
	// wait for are split in the input ("is-a-""tty") or absent from it. The
	// sleeps: docker sets the size just after the start, and resizes
	// asynchronously (the same with runc).
	out, code := dkrTTY(t, 45, 123, []ttyStep{
		{want: "# ", input: "[ -t 0 ] && echo is-a-\"\"tty; sleep 1; stty size\n"},
		{want: "45 123", rows: 31, cols: 97},
		{want: "# ", input: "sleep 1; stty size\n"},
		{want: "31 97", input: "exit 7\n"},
	}, dkrRun("--rm", "-it", "--cidfile", cid, "--name", name, dkrImage, "sh")...)
	if code != 7 {
		t.Errorf("exit status %d, want 7", code)
	}
	if !strings.Contains(out, "is-a-tty") {
		t.Errorf("stdin is not a terminal: %q", out)
	}
	if strings.ContainsRune(out, 0) {
		t.Errorf("the terminal showed a NUL byte: %q", out)
	}
}

// TestDockerDetached: `docker run -d`, `docker logs`, `docker exec` (with
// stdin, with -it, a missing executable), `docker kill -s` with several
// signals, `docker stop` (SIGTERM, then SIGKILL after -t), `docker restart`
// of the stopped container, `docker rm -f` of a running one.
func TestDockerDetached(t *testing.T) {
	requireDocker(t)
	name := dkrName("det")
	cid := dkrContainer(t, name)
	script := `trap "echo got-hup" HUP; trap "echo got-usr1" USR1; trap "echo got-term" TERM; echo ready; while true; do sleep 0.2; done`
	if r := dkr(t, "", dkrRun("-d", "--cidfile", cid, "--name", name, dkrImage, "sh", "-c", script)...); r.code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", r.code, r.stderr)
	}
	dkrWaitLogs(t, name, "ready", 1)
	if s := dkrInspect(t, name, "{{.State.Status}} {{.State.Pid}}"); !strings.HasPrefix(s, "running ") || strings.HasSuffix(s, " 0") {
		t.Errorf("state %q, want running with the stand-in's pid", s)
	}

	// exec without a terminal: stdin, stdout, stderr, exit status.
	r := dkr(t, "in\n", "exec", "-i", name, "sh", "-c", `read x; echo "exec got $x"; echo exec-err >&2; exit 7`)
	if r.code != 7 || strings.TrimSpace(r.stdout) != "exec got in" || strings.TrimSpace(r.stderr) != "exec-err" {
		t.Errorf("exec: exit %d stdout %q stderr %q; want 7, \"exec got in\", exec-err", r.code, r.stdout, r.stderr)
	}
	// exec -it: a terminal of the caller's size (docker sets it just after
	// the start, hence the sleep; the same with runc).
	out, code := dkrTTY(t, 30, 100, nil, "exec", "-it", name, "sh", "-c", `[ -t 0 ] && echo exec-tty; sleep 1; stty size; exit 9`)
	if code != 9 || !strings.Contains(out, "exec-tty") || !strings.Contains(out, "30 100") {
		t.Errorf("exec -it: exit %d, terminal %q; want 9, exec-tty, \"30 100\"", code, out)
	}
	// docker 20.10 maps any failure to start an exec'd process to 126;
	// docker 29 reads the runtime's error as it does for run (127: not
	// found). Both print the error on stdout (runc too).
	want := 126
	if clients().current() {
		want = 127
	}
	r = dkr(t, "", "exec", name, "nosuchcmd")
	if r.code != want || !strings.Contains(r.stdout+r.stderr, `exec: "nosuchcmd": executable file not found in $PATH`) {
		t.Errorf("exec of a missing executable: exit %d, output %q; want %d, executable file not found", r.code, r.stdout+r.stderr, want)
	}

	// Signals reach the init process, which traps them.
	for _, s := range []struct{ sig, want string }{{"HUP", "got-hup"}, {"SIGUSR1", "got-usr1"}} {
		if r := dkr(t, "", "kill", "-s", s.sig, name); r.code != 0 {
			t.Fatalf("docker kill -s %s: exit %d: %s", s.sig, r.code, r.stderr)
		}
		dkrWaitLogs(t, name, s.want, 1)
	}

	// stop: SIGTERM (trapped, ignored), then SIGKILL after 2 s.
	r = dkr(t, "", "stop", "-t", "2", name)
	if r.code != 0 {
		t.Fatalf("docker stop: exit %d: %s", r.code, r.stderr)
	}
	if r.took < 2*time.Second {
		t.Errorf("docker stop took %s: SIGKILL came before the 2 s timeout", r.took)
	}
	dkrWaitLogs(t, name, "got-term", 1)
	if s := dkrInspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); s != "exited 137" {
		t.Errorf("after stop: %q, want \"exited 137\"", s)
	}

	// restart the stopped container: a new VM, the same logs.
	if r := dkr(t, "", "restart", "-t", "1", name); r.code != 0 {
		t.Fatalf("docker restart: exit %d: %s", r.code, r.stderr)
	}
	dkrWaitLogs(t, name, "ready", 2)
	if s := dkrInspect(t, name, "{{.State.Status}}"); s != "running" {
		t.Errorf("after restart: %q, want running", s)
	}
	if r := dkr(t, "", "exec", name, "echo", "alive"); r.code != 0 || strings.TrimSpace(r.stdout) != "alive" {
		t.Errorf("exec after restart: exit %d, stdout %q", r.code, r.stdout)
	}

	if r := dkr(t, "", "rm", "-f", name); r.code != 0 {
		t.Errorf("docker rm -f: exit %d: %s", r.code, r.stderr)
	}
}

// TestDockerUserOptions: what users pass every day reaches the workload in
// the guest: bind mounts (rw and :ro), --tmpfs, -e, -w, -u, --hostname,
// --init, --memory and --cpus (as the container's cgroup in the guest, and
// the VM grown to hold the memory limit).
func TestDockerUserOptions(t *testing.T) {
	requireDocker(t)
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw"), filepath.Join(dir, "ro")
	for _, d := range []string{rw, ro} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o777) // writable by uid 1000
	}
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("host-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := dkrName("opts")
	cid := dkrContainer(t, name)
	script := `
echo "pwd=$(pwd) id=$(id -u):$(id -g) foo=$FOO host=$(hostname)"
echo guest-wrote >/rw/out && echo rw-ok
echo "ro=$(cat /ro/f)"; (echo x >/ro/g) 2>/dev/null && echo ro-WRITABLE || echo ro-ok
echo t >/x/t && echo tmpfs-ok; grep -q "^tmpfs /x tmpfs" /proc/mounts && echo tmpfs-mounted
echo "init=$(cat /proc/1/comm)"
echo "cgroup=$(cat /proc/self/cgroup)"
echo "memory.max=$(cat /sys/fs/cgroup/memory.max) cpu.max=$(cat /sys/fs/cgroup/cpu.max)"
echo "memtotal-kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
`
	r := dkr(t, "", dkrRun("--rm", "--cidfile", cid, "--name", name,
		"-v", rw+":/rw", "-v", ro+":/ro:ro", "--tmpfs", "/x", "-e", "FOO=bar", "-w", "/rw",
		"-u", "1000:1000", "--hostname", "myhost", "--init", "--memory", "512m", "--cpus", "0.5",
		dkrImage, "sh", "-c", script)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"pwd=/rw id=1000:1000 foo=bar host=myhost", "rw-ok", "ro=host-data", "ro-ok",
		"tmpfs-ok", "tmpfs-mounted", "init=docker-init", "cgroup=0::/", "memory.max=536870912 cpu.max=50000 100000",
	} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("the workload did not print %q", want)
		}
	}
	// The VM grew to hold the limit (the configured 256 MiB would not).
	var memKB int
	if i := strings.Index(r.stdout, "memtotal-kb="); i >= 0 {
		fmt.Sscanf(r.stdout[i:], "memtotal-kb=%d", &memKB)
	}
	if memKB < 512<<10 {
		t.Errorf("the guest has %d KiB of memory, less than the container's 512 MiB limit", memKB)
	}
	b, err := os.ReadFile(filepath.Join(rw, "out"))
	if err != nil || string(b) != "guest-wrote\n" {
		t.Errorf("host side of the rw bind mount: %q, %v", b, err)
	}
	if ctrdExists(filepath.Join(ro, "g")) {
		t.Errorf("the :ro bind mount was written through")
	}
}

// TestDockerReadOnly: --read-only makes the rootfs read-only in the guest
// while --tmpfs and bind mounts onto directories the image has still work.
func TestDockerReadOnly(t *testing.T) {
	requireDocker(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	name := dkrName("ro")
	cid := dkrContainer(t, name)
	r := dkr(t, "", dkrRun("--rm", "--cidfile", cid, "--name", name, "--read-only",
		"--tmpfs", "/tmp", "-v", dir+":/home/user", dkrImage, "sh", "-c",
		`(touch /f) 2>/dev/null && echo root-WRITABLE || echo root-ro; echo t >/tmp/t && echo tmp-ok; echo h >/home/user/h && echo home-ok`)...)
	if r.code != 0 || r.stdout != "root-ro\ntmp-ok\nhome-ok\n" {
		t.Errorf("exit %d, stdout %q; want 0, root-ro, tmp-ok, home-ok", r.code, r.stdout)
	}
}

// TestDockerReadOnlyNewMountpoint: with --read-only, a mount's missing
// destination (--init's /sbin/docker-init, --tmpfs onto a new path) must be
// created before the rootfs goes read-only, as runc does.
func TestDockerReadOnlyNewMountpoint(t *testing.T) {
	requireDocker(t)
	name := dkrName("romp")
	cid := dkrContainer(t, name)
	var leaked string
	t.Cleanup(func() { // runs before dkrContainer's check
		if leaked != "" {
			dkrCtrDelete(t, leaked)
		}
	})
	r := dkr(t, "", dkrRun("--rm", "--cidfile", cid, "--name", name, "--read-only", "--init",
		"--tmpfs", "/newdir", dkrImage, "sh", "-c", `echo t >/newdir/t && cat /newdir/t && if touch /x 2>/dev/null; then echo rw; else echo ro; fi`)...)
	if r.code != 0 {
		// dockerd may forget a container whose start failed (docs/docker.md):
		// clean it up so one failure does not leak into the next test.
		b, _ := os.ReadFile(cid)
		leaked = strings.TrimSpace(string(b))
	}
	if r.code != 0 || r.stdout != "t\nro\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and \"t\\nro\\n\"", r.code, r.stdout, r.stderr)
	}
}

// dkrCtrDelete removes container id's task and container from dockerd's
// containerd (namespace moby) directly: what dockerd fails to do after a
// failed start (see TestDockerReadOnlyNewMountpoint).
func dkrCtrDelete(t *testing.T, id string) {
	if dkrCtr("containers", "info", id).Run() != nil {
		return
	}
	t.Logf("dockerd left container %s in its containerd: deleting it with ctr", id)
	deadline := time.Now().Add(15 * time.Second)
	for dkrCtr("task", "delete", id).Run() != nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond) // until the shim has seen the stand-in exit
	}
	dkrCtr("containers", "delete", id).Run()
}

var (
	dkrSetup = &clientSetup{script: "setup-docker.sh"}
	dkrSock  string
)

// TestDockerBridgeNetwork: docker's default bridge network (dockerd with its
// defaults, iptables on), which docker 20.10 fills from its prestart hook
// after the VM booted and docker 29 between create and start: the container has the IP and MAC docker gave it, a
// default route to the bridge, reaches the gateway and another runvirt
// container by IP, and `-p` publishes its port to the host; its
// /etc/resolv.conf and /etc/hosts are docker's.
func TestDockerBridgeNetwork(t *testing.T) {
	requireDocker(t)
	if out, _ := dkrCommand("info", "--format", "{{.Driver}}").Output(); len(out) == 0 {
		t.Fatal("docker info failed")
	}
	inspect := func(name, format string) string {
		t.Helper()
		out, err := dkrCommand("inspect", "-f", format, name).Output()
		if err != nil {
			t.Fatalf("docker inspect %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	port := 18000 + os.Getpid()%1000
	web := dkrName("web")
	wcid := dkrContainer(t, web)
	r := dkr(t, "", "run", "-d", "--runtime", "runvirt", "--cidfile", wcid, "--name", web,
		"-p", fmt.Sprintf("%d:8080", port), dkrImage, "sh", "-c",
		"mkdir -p /www && echo hello-docker > /www/index.html && exec httpd -f -p 8080 -h /www")
	if r.code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", r.code, r.stderr)
	}
	defer dkr(t, "", "rm", "-f", web)
	// Per network: docker 29 leaves the top-level fields empty.
	ip := inspect(web, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
	mac := inspect(web, "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}")
	gw := inspect(web, "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}")
	if ip == "" || mac == "" || gw == "" {
		t.Fatalf("docker gave the container ip %q mac %q gateway %q", ip, mac, gw)
	}

	addrs := dkr(t, "", "exec", web, "ip", "addr").stdout
	if !strings.Contains(addrs, "link/ether "+mac) || !strings.Contains(addrs, "inet "+ip+"/") {
		t.Errorf("the guest lacks docker's mac %s and ip %s:\n%s", mac, ip, addrs)
	}
	if routes := dkr(t, "", "exec", web, "ip", "route").stdout; !strings.Contains(routes, "default via "+gw) {
		t.Errorf("no default route via %s:\n%s", gw, routes)
	}
	if r := dkr(t, "", "exec", web, "ping", "-c", "1", "-W", "20", gw); r.code != 0 {
		t.Errorf("ping the gateway %s: exit %d %s %s", gw, r.code, r.stdout, r.stderr)
	}

	// Another runvirt container reaches web by IP; its resolv.conf and
	// hosts are the files docker made for it.
	client := dkrName("client")
	ccid := dkrContainer(t, client)
	r = dkr(t, "", "run", "--runtime", "runvirt", "--cidfile", ccid, "--name", client, "--hostname", "client-host", dkrImage,
		"sh", "-c", "wget -q -O - http://"+ip+":8080/ && echo ---resolv && cat /etc/resolv.conf && echo ---hosts && cat /etc/hosts")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hello-docker\n") {
		t.Errorf("client fetched %q (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
	resolvPath := inspect(client, "{{.ResolvConfPath}}")
	hostsPath := inspect(client, "{{.HostsPath}}")
	resolv, _ := os.ReadFile(resolvPath)
	hosts, _ := os.ReadFile(hostsPath)
	if _, after, ok := strings.Cut(r.stdout, "---resolv\n"); !ok || !strings.HasPrefix(after, string(resolv)) || len(resolv) == 0 {
		t.Errorf("the guest's resolv.conf is not docker's (%s: %q):\n%s", resolvPath, resolv, r.stdout)
	}
	// docker 29 takes the container's own line out of its hosts file when
	// the container stops: what is left must begin the guest's copy.
	_, after, ok := strings.Cut(r.stdout, "---hosts\n")
	sameHosts := after == string(hosts)
	if clients().current() {
		sameHosts = len(hosts) > 0 && strings.HasPrefix(after, string(hosts))
	}
	if !ok || !sameHosts || !strings.Contains(after, "client-host") {
		t.Errorf("the guest's hosts is not docker's (%s: %q):\n%s", hostsPath, hosts, r.stdout)
	}
	dkr(t, "", "rm", client)

	// The host reaches web: directly, through -p on the gateway address
	// (iptables DNAT) and on localhost (docker-proxy).
	hc := http.Client{Timeout: 10 * time.Second}
	for _, u := range []string{
		"http://" + ip + ":8080/",
		fmt.Sprintf("http://%s:%d/", gw, port),
		fmt.Sprintf("http://127.0.0.1:%d/", port),
	} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello-docker\n" {
			t.Errorf("GET %s: %q", u, body)
		}
	}
}

// TestDockerSeccomp: docker's default seccomp profile holds inside the VM:
// the workload runs under two filters, the profile's and the agent's own
// (which refuses open_by_handle_at to every container), and unshare(2),
// which the profile denies without CAP_SYS_ADMIN (and which needs no
// capability to make a user namespace), fails; unconfined, the same command
// works, under the agent's filter alone.
func TestDockerSeccomp(t *testing.T) {
	requireDocker(t)
	script := `grep '^Seccomp' /proc/self/status; unshare -U true && echo unshare=ok || echo unshare=denied`
	name := dkrName("seccomp")
	cid := dkrContainer(t, name)
	r := dkr(t, "", dkrRun("--rm", "--cidfile", cid, "--name", name, dkrImage, "sh", "-c", script)...)
	if want := "Seccomp:\t2\nSeccomp_filters:\t2\nunshare=denied\n"; r.code != 0 || r.stdout != want {
		t.Errorf("default profile: exit %d, stdout %q, stderr %q, want %q", r.code, r.stdout, r.stderr, want)
	}
	name2 := dkrName("unconfined")
	cid2 := dkrContainer(t, name2)
	r = dkr(t, "", dkrRun("--rm", "--cidfile", cid2, "--name", name2, "--security-opt", "seccomp=unconfined", dkrImage, "sh", "-c", script)...)
	if want := "Seccomp:\t2\nSeccomp_filters:\t1\nunshare=ok\n"; r.code != 0 || r.stdout != want {
		t.Errorf("unconfined: exit %d, stdout %q, stderr %q, want %q", r.code, r.stdout, r.stderr, want)
	}
}
