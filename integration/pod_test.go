package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/runtime"
)

// podMember writes a bundle for a container of a pod, as a CRI
// runtime does: the pod's annotations, and the sandbox stand-in's ipc, uts
// and network namespaces by path.
func (e *env) podMember(name string, sandboxPid int, ann map[string]string, args ...string) string {
	e.t.Helper()
	bundle := filepath.Join(e.t.TempDir(), name)
	makeBusyboxRootfs(e.t, filepath.Join(bundle, "rootfs"))
	s := defaultSpec()
	s.Hostname = ""
	s.Process.Args = args
	s.Annotations = ann
	ns := func(t specs.LinuxNamespaceType, n string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: t, Path: fmt.Sprintf("/proc/%d/ns/%s", sandboxPid, n)}
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, ns(specs.NetworkNamespace, "net"), ns(specs.IPCNamespace, "ipc"),
		ns(specs.UTSNamespace, "uts"), {Type: specs.MountNamespace},
	}
	writeSpecTo(e.t, bundle, s)
	return bundle
}

func writeSpecTo(t *testing.T, bundle string, s *specs.Spec) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readSpec(t *testing.T, bundle string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// qemusOf lists the QEMU processes of the environment.
func (e *env) qemusOf() []proc {
	var out []proc
	for _, p := range processesMentioning(e.root) {
		if strings.Contains(p.cmdline, "qemu-system") {
			out = append(out, p)
		}
	}
	return out
}

// A pod is one VM: the sandbox container boots it, the pod's containers are
// created inside it and share its ipc and uts namespaces, and deleting a
// container leaves the VM to the rest of the pod.
func TestPodInOneVM(t *testing.T) {
	for _, tc := range []struct {
		name            string
		typ, sandboxKey string
	}{
		{"containerd", runtime.AnnotationCRIType, runtime.AnnotationCRISandbox},
		{"cri-o", runtime.AnnotationCRIOType, runtime.AnnotationCRIOSandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.spec.Hostname = "pod-host"
			e.spec.Annotations = map[string]string{tc.typ: "sandbox", tc.sandboxKey: "pod"}
			e.spec.Process.Args = []string{"sleep", "600"}
			pid, _, _ := e.create("pod")
			e.mustRun("start", "pod")

			// A host directory bound read-write and another read-only into
			// the member: both are bound into the share after the VM (and
			// virtiofsd) started.
			rw, ro := t.TempDir(), t.TempDir()
			os.WriteFile(filepath.Join(ro, "file"), []byte("host-ro\n"), 0o644)
			ann := map[string]string{tc.typ: "container", tc.sandboxKey: "pod"}
			script := `cat /proc/sys/kernel/random/boot_id; hostname; readlink /proc/self/ns/ipc; ` +
				`echo from-member > /rw/out; cat /ro/file; echo x > /ro/file 2>/dev/null && echo ro-writable; echo done`
			mb := e.podMember("app", pid, ann, "sh", "-c", script)
			s := readSpec(t, mb)
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/rw", Type: "bind", Source: rw, Options: []string{"rbind", "rw"}},
				specs.Mount{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}})
			writeSpecTo(t, mb, s)

			r := e.run("", "run", "--bundle", mb, "app")
			if r.code != 0 {
				t.Fatalf("member run: exit %d, stderr %q", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 5 || lines[4] != "done" {
				t.Fatalf("member output %q", r.stdout)
			}
			hostBoot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
			sbOut := e.mustRun("exec", "pod", "sh", "-c", "cat /proc/sys/kernel/random/boot_id; readlink /proc/self/ns/ipc")
			sbLines := strings.Split(strings.TrimSpace(sbOut), "\n")
			if lines[0] != sbLines[0] || lines[0] == strings.TrimSpace(string(hostBoot)) {
				t.Errorf("boot ids: member %s, sandbox %s, host %s", lines[0], sbLines[0], hostBoot)
			}
			if lines[1] != "pod-host" {
				t.Errorf("member hostname %q, want the pod's", lines[1])
			}
			if lines[2] != sbLines[1] {
				t.Errorf("member ipc namespace %s, sandbox's %s", lines[2], sbLines[1])
			}
			if lines[3] != "host-ro" {
				t.Errorf("read-only bind shows %q", lines[3])
			}
			if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "from-member\n" {
				t.Errorf("rw bind: host file holds %q", b)
			}
			if q := e.qemusOf(); len(q) != 1 {
				t.Errorf("want one VM for the pod, found %v", q)
			}
			// run deleted the member: its share mounts are gone, the VM runs on.
			if m := mountsUnder(filepath.Join(e.root, "pod", "shared", "app")); len(m) != 0 {
				t.Errorf("member mounts left after its delete: %v", m)
			}
			if out := e.mustRun("exec", "pod", "echo", "alive"); out != "alive\n" {
				t.Errorf("sandbox after member delete: %q", out)
			}

			// A member that outlives nothing: killing the sandbox stops the
			// VM, and the member is stopped with it.
			mb2 := e.podMember("app2", pid, ann, "sleep", "600")
			e.createBundle("app2", mb2)
			e.mustRun("start", "app2")
			if st, _ := e.state("app2"); st.Status != "running" {
				t.Fatalf("member status %q", st.Status)
			}
			e.mustRun("kill", "pod", "KILL")
			reapStandIn(t, pid, 60*time.Second)
			if !e.waitStatus("app2", "stopped", 30*time.Second) {
				t.Error("member not stopped after its sandbox died")
			}
			e.mustRun("delete", "app2")
			e.mustRun("delete", "pod")
		})
	}
}

// A pod's container needs its sandbox: a clear error, nothing left.
func TestPodBadSandbox(t *testing.T) {
	e := newEnv(t)
	ann := map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "nopod"}
	mb := e.podMember("orphan", os.Getpid(), ann, "true")
	e.mustFail("its pod sandbox nopod does not exist", "create", "--bundle", mb, "orphan")
	if _, err := os.Stat(filepath.Join(e.root, "orphan")); err == nil {
		t.Error("state dir left behind")
	}
	s := readSpec(t, mb)
	s.Annotations = map[string]string{runtime.AnnotationCRIType: "sidecar"}
	writeSpecTo(t, mb, s)
	e.mustFail(`unknown container type`, "create", "--bundle", mb, "orphan")

	// A container of a pod is no sandbox for another.
	e.spec.Process.Args = []string{"sleep", "600"}
	e.spec.Annotations = map[string]string{runtime.AnnotationCRIType: "sandbox", runtime.AnnotationCRISandbox: "pod"}
	pid, _, _ := e.create("pod")
	ann["io.kubernetes.cri.sandbox-id"] = "pod"
	mb = e.podMember("member", pid, ann, "sleep", "600")
	e.createBundle("member", mb)
	s.Annotations = map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "member"}
	writeSpecTo(t, mb, s)
	e.mustFail("member is a container of pod pod, not a pod sandbox", "create", "--bundle", mb, "nested")
	e.mustRun("delete", "--force", "member")
	e.mustRun("delete", "--force", "pod")
	for _, id := range []string{"orphan", "nested"} {
		if _, err := os.Stat(filepath.Join(e.root, id)); err == nil {
			t.Errorf("state dir of %s left behind", id)
		}
	}
}
