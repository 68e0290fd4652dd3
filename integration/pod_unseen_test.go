package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/runtime"
)

// TestPodMemberUnseenUntilInside: a pod's sandbox container holds
// CAP_SYS_PTRACE and watches its pid namespace while members that share it
// are created and run. The agent sets each member up with the guest's
// root, the agent's pipes and every privilege, so no agent process may
// ever be visible there: none whose argv is the agent's child, none whose
// root holds the guest's own files (/etc/runvirt/agent.version is only in
// the guest's initramfs).
func TestPodMemberUnseenUntilInside(t *testing.T) {
	e := newEnv(t)
	caps := append([]string{"CAP_SYS_PTRACE"}, e.spec.Process.Capabilities.Bounding...)
	e.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	e.spec.Annotations = map[string]string{runtime.AnnotationCRIType: "sandbox", runtime.AnnotationCRISandbox: "pod"}
	e.spec.Process.Args = []string{"sh", "-c", `while :; do
	for p in /proc/[0-9]*; do
		case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in
		*__runvirt_[ie][nx][ie]*) echo "$p: agent child $(readlink $p/root) fds $(ls $p/fd 2>/dev/null | tr '\n' ' ')" >> /leaks ;;
		esac
		v=$(cat $p/root/etc/runvirt/agent.version 2>/dev/null) &&
			echo "$p: guest root (agent $v) fds $(ls $p/fd 2>/dev/null | tr '\n' ' ')" >> /leaks
	done
done`}
	pid, _, _ := e.create("pod")
	e.mustRun("start", "pod")
	ann := map[string]string{runtime.AnnotationCRIType: "container", runtime.AnnotationCRISandbox: "pod"}
	// Half the members run at once; the others wait between create and
	// start, where an init is set up and waits for its start byte. Each
	// has many mounts, so its setup takes a while.
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("m%d", i)
		mb := e.podMember(name, pid, ann, "true")
		s := readSpec(t, mb)
		sharePidNS(s, pid)
		for j := 0; j < 40; j++ {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: fmt.Sprintf("/m/%d", j), Type: "tmpfs", Source: "tmpfs"})
		}
		writeSpecTo(t, mb, s)
		if i%2 == 0 {
			if r := e.run("", "run", "--bundle", mb, name); r.code != 0 {
				t.Fatalf("member %s: exit %d, stderr %q", name, r.code, r.stderr)
			}
			continue
		}
		e.createBundle(name, mb)
		time.Sleep(500 * time.Millisecond)
		e.mustRun("start", name)
		if !e.waitStatus(name, "stopped", 30*time.Second) {
			t.Fatalf("member %s did not stop", name)
		}
		e.mustRun("delete", name)
	}
	// A member deleted before start never runs, and its delete does not
	// wait on a workload that cannot stop.
	mb := e.podMember("dropped", pid, ann, "touch", "/ran")
	s := readSpec(t, mb)
	sharePidNS(s, pid)
	writeSpecTo(t, mb, s)
	e.createBundle("dropped", mb)
	began := time.Now()
	e.mustRun("delete", "dropped")
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("delete of a created member took %v", d)
	}
	if _, err := os.Stat(filepath.Join(mb, "rootfs", "ran")); err == nil {
		t.Error("a member deleted before start ran")
	}

	// The watcher does see a member's processes: one that sleeps long
	// enough to be seen is in the sandbox's pid namespace.
	mb = e.podMember("seen", pid, ann, "sleep", "600")
	s = readSpec(t, mb)
	sharePidNS(s, pid)
	writeSpecTo(t, mb, s)
	e.createBundle("seen", mb)
	e.mustRun("start", "seen")
	time.Sleep(300 * time.Millisecond)
	if out := e.mustRun("exec", "pod", "sh", "-c", "ps -o args"); !strings.Contains(out, "sleep 600") {
		t.Errorf("the sandbox does not see the member's workload: %s", out)
	}
	if out, err := e.command("exec", "pod", "cat", "/leaks").CombinedOutput(); err == nil {
		t.Errorf("the sandbox container saw the agent's setup of its members:\n%s", strings.TrimSpace(string(out)))
	}
	e.mustRun("delete", "--force", "seen")
	e.mustRun("delete", "--force", "pod")
	reapStandIn(t, pid, 30*time.Second)
}

// sharePidNS makes a pod member's spec join the sandbox stand-in's pid
// namespace, as a CRI runtime does for a pod that shares one.
func sharePidNS(s *specs.Spec, sandboxPid int) {
	for j, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			s.Linux.Namespaces[j].Path = fmt.Sprintf("/proc/%d/ns/pid", sandboxPid)
		}
	}
}
