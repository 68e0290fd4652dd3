package clients

import (
	"strings"
	"testing"
	"time"
)

// TestDockerJoinContainerNamespaces: docker's container: modes (how docker
// builds pods) put the new container in the VM of the container it names,
// sharing what was asked: `ps` shows x's processes, 127.0.0.1 is x's. A
// member stopped and removed leaves x running; --pid container:x with a
// network of its own is refused with the reason and leaves nothing; x
// removed at the end leaves nothing either.
func TestDockerJoinContainerNamespaces(t *testing.T) {
	requireDocker(t)
	x := dkrName("nsx")
	xcid := dkrContainer(t, x)
	r := dkr(t, "", "run", "-d", "--runtime", "runvirt", "--network", "none", "--cidfile", xcid, "--name", x, dkrImage,
		"sh", "-c", `(while true; do echo hi-from-x | nc -l -p 7777; done) & echo ready; exec sleep 3601`)
	if r.code != 0 {
		t.Fatalf("docker run -d x: exit %d: %s", r.code, r.stderr)
	}
	defer dkrCommand("rm", "-f", x).Run()
	dkrWaitLogs(t, x, "ready", 1)
	time.Sleep(300 * time.Millisecond) // nc listening

	m := dkrName("nsm")
	r = dkr(t, "", "run", "--rm", "--runtime", "runvirt", "--cidfile", dkrContainer(t, m), "--name", m,
		"--pid", "container:"+x, "--network", "container:"+x, dkrImage,
		"sh", "-c", `ps -o pid,args; nc 127.0.0.1 7777 </dev/null`)
	if r.code != 0 {
		t.Errorf("docker run --pid/--network container:x: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "sleep 3601") {
		t.Errorf("ps in the member does not show x's process (sleep 3601):\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "hi-from-x") {
		t.Errorf("the member did not reach x's listener on 127.0.0.1:7777: stdout %q, stderr %q", r.stdout, r.stderr)
	}

	// A detached member, removed while running.
	d := dkrName("nsd")
	r = dkr(t, "", "run", "-d", "--runtime", "runvirt", "--cidfile", dkrContainer(t, d), "--name", d,
		"--network", "container:"+x, "--ipc", "private", dkrImage, "sleep", "3602")
	if r.code != 0 {
		t.Fatalf("docker run -d --network container:x: exit %d: %s", r.code, r.stderr)
	}
	bootID := func(name string) string {
		return strings.TrimSpace(dkr(t, "", "exec", name, "cat", "/proc/sys/kernel/random/boot_id").stdout)
	}
	if bx, bd := bootID(x), bootID(d); bx == "" || bx != bd {
		t.Errorf("the member runs on another kernel than x (boot ids %q, %q): not in x's vm", bd, bx)
	}
	if r := dkr(t, "", "exec", d, "sh", "-c", "nc 127.0.0.1 7777 </dev/null"); !strings.Contains(r.stdout, "hi-from-x") {
		t.Errorf("exec in the detached member did not reach x's listener: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if r := dkr(t, "", "rm", "-f", d); r.code != 0 {
		t.Errorf("docker rm -f member: exit %d: %s", r.code, r.stderr)
	}

	// Its own network with x's pid namespace: refused at create.
	n := dkrName("nsn")
	r = dkr(t, "", "run", "--rm", "--runtime", "runvirt", "--cidfile", dkrContainer(t, n), "--name", n,
		"--network", "none", "--pid", "container:"+x, dkrImage, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "join its network namespace too") {
		t.Errorf("--pid container:x with a network of its own: exit %d, stderr %q; want a refusal saying to join x's network", r.code, r.stderr)
	}
	dkrCommand("rm", "-f", n).Run()

	if s := dkrInspect(t, x, "{{.State.Status}}"); s != "running" {
		t.Errorf("x is %q after its members went, want running", s)
	}
	if r := dkr(t, "", "exec", x, "echo", "x-alive"); strings.TrimSpace(r.stdout) != "x-alive" {
		t.Errorf("exec in x after its members went: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := dkr(t, "", "rm", "-f", x); r.code != 0 {
		t.Errorf("docker rm -f x: exit %d: %s", r.code, r.stderr)
	}
}

// TestPodmanJoinContainerNamespaces: podman's container: modes likewise:
// the member sees x's processes (--pid), x's hostname (--uts) and x's
// listener on 127.0.0.1 (--network); nothing is left at the end.
func TestPodmanJoinContainerNamespaces(t *testing.T) {
	requirePodman(t)
	x := pdmName("nsx")
	r := pdm(t, "", "run", "-d", "--runtime", "runvirt", "--network", "none", "--cidfile", pdmContainer(t, x), "--name", x, pdmImage,
		"sh", "-c", `(while true; do echo hi-from-x | nc -l -p 7777; done) & echo ready; exec sleep 3601`)
	if r.code != 0 {
		t.Fatalf("podman run -d x: exit %d: %s", r.code, r.stderr)
	}
	defer pdmCommand("rm", "-f", "-t", "0", x).Run()
	pdmWaitLogs(t, x, "ready", 1)
	time.Sleep(300 * time.Millisecond) // nc listening

	m := pdmName("nsm")
	r = pdm(t, "", "run", "--rm", "--runtime", "runvirt", "--cidfile", pdmContainer(t, m), "--name", m,
		"--pid", "container:"+x, "--ipc", "container:"+x, "--uts", "container:"+x, "--network", "container:"+x, pdmImage,
		"sh", "-c", `ps -o args; echo "host=$(hostname)"; nc 127.0.0.1 7777 </dev/null`)
	xHost := strings.TrimSpace(pdm(t, "", "exec", x, "hostname").stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "sleep 3601") || !strings.Contains(r.stdout, "hi-from-x") ||
		xHost == "" || !strings.Contains(r.stdout, "host="+xHost+"\n") {
		t.Errorf("member of x: exit %d, stdout %q, stderr %q; want x's sleep 3601, hostname %q and listener", r.code, r.stdout, r.stderr, xHost)
	}
	if r := pdm(t, "", "exec", x, "echo", "x-alive"); strings.TrimSpace(r.stdout) != "x-alive" {
		t.Errorf("exec in x after its member went: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := pdm(t, "", "rm", "-f", "-t", "0", x); r.code != 0 {
		t.Errorf("podman rm -f x: exit %d: %s", r.code, r.stderr)
	}
}
