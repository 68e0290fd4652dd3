package clients

// Kubernetes pods through containerd's CRI plugin, driven as the kubelet
// drives it (crictl and critest cannot be installed here): a small CRI
// client on k8s.io/cri-api over gRPC, and the streaming server's websocket
// protocol for interactive exec.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criHandler is the RuntimeClass handler setup-containerd.sh registers.
const criHandler = "runvirt"

// criRoot is where the runc shim keeps runvirt's state for the k8s.io namespace.
const criRoot = "/run/containerd/runc/k8s.io"

type criClient struct {
	t  *testing.T
	rt cri.RuntimeServiceClient
}

func newCRIClient(t *testing.T) *criClient {
	t.Helper()
	requireContainerd(t)
	conn, err := grpc.NewClient("unix://"+ctrdSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &criClient{t: t, rt: cri.NewRuntimeServiceClient(conn)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.rt.Version(ctx, &cri.VersionRequest{})
	if err != nil {
		t.Fatalf("CRI version: %v", err)
	}
	t.Logf("CRI: %s %s (API %s)", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return c
}

func criCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// runPod starts a pod with the runvirt handler and registers its removal.
func (c *criClient) runPod(name string) (string, *cri.PodSandboxConfig) {
	c.t.Helper()
	return c.runPodOf(name, criHandler, cri.NamespaceMode_CONTAINER)
}

// runPodOf starts a pod of the handler, its containers' pid namespaces as
// pid says, and registers its removal.
func (c *criClient) runPodOf(name, handler string, pid cri.NamespaceMode) (string, *cri.PodSandboxConfig) {
	c.t.Helper()
	cfg := &cri.PodSandboxConfig{
		Metadata: &cri.PodSandboxMetadata{
			Name: name, Namespace: "default", Uid: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()),
		},
		Hostname:     name,
		LogDirectory: c.t.TempDir(),
		Linux: &cri.LinuxPodSandboxConfig{
			SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{
					Network: cri.NamespaceMode_POD, Pid: pid, Ipc: cri.NamespaceMode_POD,
				},
			},
		},
	}
	ctx, cancel := criCtx()
	defer cancel()
	resp, err := c.rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		c.t.Fatalf("RunPodSandbox (%s): %v", handler, err)
	}
	id := resp.PodSandboxId
	c.t.Cleanup(func() { c.removePod(id, false) })
	return id, cfg
}

// removePod stops and removes the pod; with mustExist it fails the test if
// the pod was gone already.
func (c *criClient) removePod(id string, mustExist bool) {
	ctx, cancel := criCtx()
	defer cancel()
	if _, err := c.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: id}); err != nil {
		if mustExist {
			c.t.Errorf("pod %s: %v", id, err)
		}
		return
	}
	if !mustExist {
		c.t.Errorf("pod %s left behind; removing it", id)
	}
	if _, err := c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		c.t.Errorf("StopPodSandbox: %v", err)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		c.t.Errorf("RemovePodSandbox: %v", err)
	}
}

// startContainer creates and starts a container in the pod.
func (c *criClient) startContainer(pod string, podCfg *cri.PodSandboxConfig, name string, cmd ...string) string {
	c.t.Helper()
	return c.startContainerWith(pod, podCfg, name, nil, cmd...)
}

// startContainerWith is startContainer with the container's resources.
func (c *criClient) startContainerWith(pod string, podCfg *cri.PodSandboxConfig, name string, res *cri.LinuxContainerResources, cmd ...string) string {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	cfg := &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: name},
		Image:    &cri.ImageSpec{Image: ctrdImage},
		Command:  cmd,
		LogPath:  name + ".log",
	}
	if res != nil {
		cfg.Linux = &cri.LinuxContainerConfig{Resources: res}
	}
	cr, err := c.rt.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		c.t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if _, err := c.rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		c.t.Fatalf("StartContainer %s: %v", name, err)
	}
	return cr.ContainerId
}

// execSync runs cmd in the container and returns its stdout and exit code.
func (c *criClient) execSync(id string, cmd ...string) (string, int32) {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	r, err := c.rt.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 60})
	if err != nil {
		c.t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	if len(r.Stderr) > 0 {
		c.t.Logf("ExecSync %v stderr: %s", cmd, r.Stderr)
	}
	return string(r.Stdout), r.ExitCode
}

// dialStream opens a websocket of the kubelet's channel protocol
// (v4.channel.k8s.io) to the CRI streaming server's url, for what (exec,
// port-forward), with a deadline for the whole stream.
func (c *criClient) dialStream(what, url string, deadline time.Duration) *websocket.Conn {
	c.t.Helper()
	wcfg, err := websocket.NewConfig(url, "http://localhost/")
	if err != nil {
		c.t.Fatal(err)
	}
	wcfg.Protocol = []string{"v4.channel.k8s.io"}
	ws, err := websocket.DialConfig(wcfg)
	if err != nil {
		c.t.Fatalf("%s stream %s: %v", what, url, err)
	}
	ws.SetDeadline(time.Now().Add(deadline))
	return ws
}

// streamExec runs cmd through CRI's streaming Exec with stdin, over the
// websocket channel protocol (v4.channel.k8s.io: one byte of channel,
// 0 stdin, 1 stdout, 2 stderr, 3 the final status), and returns stdout and
// the status message.
func (c *criClient) streamExec(id, stdin string, cmd ...string) (string, string) {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	r, err := c.rt.Exec(ctx, &cri.ExecRequest{ContainerId: id, Cmd: cmd, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		c.t.Fatalf("Exec: %v", err)
	}
	ws := c.dialStream("exec", strings.Replace(r.Url, "http://", "ws://", 1), 2*time.Minute)
	defer ws.Close()
	if err := websocket.Message.Send(ws, append([]byte{0}, stdin...)); err != nil {
		c.t.Fatalf("exec stdin: %v", err)
	}
	var stdout, status bytes.Buffer
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if err != io.EOF {
				c.t.Logf("exec stream ended: %v", err)
			}
			break
		}
		if len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case 1:
			stdout.Write(msg[1:])
		case 2:
			c.t.Logf("exec stderr: %s", msg[1:])
		case 3:
			status.Write(msg[1:])
		}
	}
	return stdout.String(), status.String()
}

func (c *criClient) containerState(id string) cri.ContainerState {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	r, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		c.t.Fatalf("ContainerStatus: %v", err)
	}
	return r.Status.State
}

// qemuCount counts runvirt's QEMU processes on the host.
func qemuCount() int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), "runvirt-") {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to timeout.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestCRIPod: a pod with the runvirt RuntimeClass handler and two
// containers, both in the pod's one VM: exec (sync and streaming), logs,
// pod networking (CNI bridge: from the host and from another pod), stop and
// removal leaving nothing behind.
func TestCRIPod(t *testing.T) {
	c := newCRIClient(t)
	before := qemuCount()
	pod, podCfg := c.runPod("rv-pod")
	ctx, cancel := criCtx()
	defer cancel()
	ps, err := c.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	ip := ps.Status.GetNetwork().GetIp()
	t.Logf("pod %s, ip %s", pod, ip)
	if ip == "" {
		t.Error("the pod has no IP")
	}

	web := c.startContainer(pod, podCfg, "web", "sh", "-c",
		`mkdir -p /www && echo hello-from-pod > /www/index.html && echo web-started && exec httpd -f -p 8080 -h /www`)
	side := c.startContainer(pod, podCfg, "side", "sh", "-c", `echo side-started; echo side-err >&2; exec sleep 600`)

	// One VM, the sandbox's; none for the pod's containers.
	if n := len(ctrdProcsOf(pod)); n == 0 {
		t.Errorf("no VM for the pod %s", pod)
	}
	for _, c := range []string{web, side} {
		if procs := ctrdProcsOf(c); len(procs) > 0 {
			for _, p := range procs {
				if strings.Contains(p, "qemu-system") || strings.Contains(p, " monitor ") {
					t.Errorf("container %s has a VM of its own: %s", c, p)
				}
			}
		}
	}
	// Both containers are in the pod's VM: one guest kernel, not the host's.
	boot1, _ := c.execSync(web, "cat", "/proc/sys/kernel/random/boot_id")
	boot2, _ := c.execSync(side, "cat", "/proc/sys/kernel/random/boot_id")
	if boot1 != boot2 || strings.TrimSpace(boot1) == hostBootID(t) || boot1 == "" {
		t.Errorf("boot ids: web %q, side %q, host %q", boot1, boot2, hostBootID(t))
	}
	host1, _ := c.execSync(side, "hostname")
	if strings.TrimSpace(host1) != "rv-pod" {
		t.Errorf("hostname in the pod: %q", host1)
	}
	if out, code := c.execSync(side, "sh", "-c", "echo out; exit 3"); out != "out\n" || code != 3 {
		t.Errorf("ExecSync: %q, exit %d; want \"out\", 3", out, code)
	}
	// The pod's containers share its network: side reaches web on localhost.
	var page string
	waitFor(30*time.Second, func() bool {
		page, _ = c.execSync(side, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")
		return page == "hello-from-pod\n"
	})
	if page != "hello-from-pod\n" {
		t.Errorf("side fetched %q from web over localhost", page)
	}
	// The host reaches the pod at its CNI address.
	if ip != "" {
		hc := http.Client{Timeout: 5 * time.Second}
		var body []byte
		waitFor(30*time.Second, func() bool {
			resp, err := hc.Get("http://" + ip + ":8080/")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, _ = io.ReadAll(resp.Body)
			return true
		})
		if string(body) != "hello-from-pod\n" {
			t.Errorf("host fetched %q from the pod at %s", body, ip)
		}
	}

	// The guest has the pod's address; another pod (another VM) reaches
	// this one at it.
	if ip != "" {
		if addrs, _ := c.execSync(web, "ip", "-o", "addr"); !strings.Contains(addrs, "inet "+ip+"/") {
			t.Errorf("the guest lacks the pod IP %s:\n%s", ip, addrs)
		}
		pod2, pod2Cfg := c.runPod("rv-pod2")
		peer := c.startContainer(pod2, pod2Cfg, "peer", "sleep", "600")
		var got string
		waitFor(30*time.Second, func() bool {
			got, _ = c.execSync(peer, "wget", "-q", "-O", "-", "http://"+ip+":8080/")
			return got == "hello-from-pod\n"
		})
		if got != "hello-from-pod\n" {
			t.Errorf("pod2 fetched %q from pod1 at %s", got, ip)
		}
		c.removePod(pod2, true)
	}

	out, status := c.streamExec(side, "ping\n", "sh", "-c", "read l; echo got:$l")
	if out != "got:ping\n" || !strings.Contains(status, "Success") {
		t.Errorf("streaming exec: stdout %q, status %q", out, status)
	}

	// Logs, in the CRI format: "<time> <stream> F <line>".
	logs, _ := os.ReadFile(filepath.Join(podCfg.LogDirectory, "side.log"))
	if !strings.Contains(string(logs), " stdout F side-started\n") || !strings.Contains(string(logs), " stderr F side-err\n") {
		t.Errorf("side's log: %q", logs)
	}

	// Stop: side's sleep is PID 1 and ignores SIGTERM, so the timeout's
	// SIGKILL ends it.
	if _, err := c.rt.StopContainer(ctx, &cri.StopContainerRequest{ContainerId: side, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := c.containerState(side); st != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("side after stop: %v", st)
	}
	if _, err := c.rt.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: side}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	// The VM serves the rest of the pod.
	if out, _ := c.execSync(web, "echo", "still-here"); out != "still-here\n" {
		t.Errorf("web after side's removal: %q", out)
	}
	if _, err := os.Stat(filepath.Join(criRoot, side)); err == nil {
		t.Errorf("runvirt state of removed container %s left", side)
	}

	c.removePod(pod, true)
	if !waitFor(20*time.Second, func() bool { return qemuCount() == before }) {
		t.Errorf("VMs left after the pod's removal: %d", qemuCount()-before)
	}
	for _, id := range []string{pod, web, side} {
		if _, err := os.Stat(filepath.Join(criRoot, id)); err == nil {
			t.Errorf("runvirt state of %s left", id)
		}
		if procs := ctrdProcsOf(id); len(procs) > 0 {
			t.Errorf("processes of %s left: %v", id, procs)
		}
	}
	if m, _ := json.Marshal(mountsBelow(criRoot)); len(mountsBelow(criRoot)) > 0 {
		t.Errorf("mounts left under %s: %s", criRoot, m)
	}
}

// mountsBelow lists the host's mount points below dir.
func mountsBelow(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestCRIOOMKilled: a container with a 32 MiB limit whose init the guest's
// OOM killer kills is reported as kubelet expects it: exited, exit code 137,
// reason OOMKilled (containerd learns it from the runc shim, which saw the
// stand-in's host cgroup count the kill). A container of the same pod that
// exits on its own keeps reason Completed.
func TestCRIOOMKilled(t *testing.T) {
	c := newCRIClient(t)
	pod, podCfg := c.runPod("rv-oom")
	defer c.removePod(pod, true)
	res := &cri.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, MemorySwapLimitInBytes: 32 << 20}
	hog := c.startContainerWith(pod, podCfg, "hog", res, "sh", "-c", memoryHog)
	fine := c.startContainerWith(pod, podCfg, "fine", res, "sh", "-c", "exit 0")
	for _, w := range []struct {
		id, reason string
		code       int32
	}{{hog, "OOMKilled", 137}, {fine, "Completed", 0}} {
		var st *cri.ContainerStatus
		waitFor(60*time.Second, func() bool {
			ctx, cancel := criCtx()
			defer cancel()
			r, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: w.id})
			if err != nil {
				t.Fatalf("ContainerStatus: %v", err)
			}
			st = r.Status
			return st.State == cri.ContainerState_CONTAINER_EXITED
		})
		if st.State != cri.ContainerState_CONTAINER_EXITED || st.ExitCode != w.code || st.Reason != w.reason {
			t.Errorf("%s: state %v, exit code %d, reason %q; want exited, %d, %q", st.Metadata.GetName(), st.State, st.ExitCode, st.Reason, w.code, w.reason)
		}
	}
}
