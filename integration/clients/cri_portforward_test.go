package clients

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// portForward forwards one connection to port of the pod through CRI's
// PortForward, as kubectl port-forward does through the kubelet: over the
// streaming server's websocket protocol (v4.channel.k8s.io with ?port=N:
// channel 0 carries the connection's data, channel 1 the server's error;
// each channel's first two bytes are the port, little-endian). It sends
// send and returns what came back on the data channel until the server
// ended the connection, and the error channel's text.
func (c *criClient) portForward(pod string, port int32, send string) (data, errText string) {
	c.t.Helper()
	ctx, cancel := criCtx()
	defer cancel()
	r, err := c.rt.PortForward(ctx, &cri.PortForwardRequest{PodSandboxId: pod, Port: []int32{port}})
	if err != nil {
		c.t.Fatalf("PortForward: %v", err)
	}
	ws := c.dialStream("port-forward", strings.Replace(r.Url, "http://", "ws://", 1)+fmt.Sprintf("?port=%d", port), time.Minute)
	defer ws.Close()
	if err := websocket.Message.Send(ws, append([]byte{0}, send...)); err != nil {
		c.t.Fatalf("port-forward send: %v", err)
	}
	var chans [2]bytes.Buffer
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if err != io.EOF {
				c.t.Logf("port-forward stream ended: %v", err)
			}
			break
		}
		if len(msg) == 0 || msg[0] > 1 {
			c.t.Fatalf("port-forward: a frame on no channel of the port's: %q", msg)
		}
		chans[msg[0]].Write(msg[1:])
	}
	for i := range chans {
		b := chans[i].Bytes()
		if len(b) < 2 || binary.LittleEndian.Uint16(b) != uint16(port) {
			c.t.Fatalf("port-forward: channel %d does not start with port %d: %q", i, port, b)
		}
	}
	return string(chans[0].Bytes()[2:]), string(chans[1].Bytes()[2:])
}

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// TestCRIPortForward: CRI's PortForward (kubectl port-forward) reaches a
// port the pod listens on in its VM, with the exact bytes both ways, once
// the listener is up; a port that closes in the guest stops being
// forwarded; removing the pod leaves nothing. containerd dials localhost
// in the pod's network namespace on the host, where runvirt mirrors the
// guest's localhost listeners.
func TestCRIPortForward(t *testing.T) {
	c := newCRIClient(t)
	before := qemuCount()
	pod, podCfg := c.runPod("rv-portfwd")
	// A persistent server, and one that serves one connection only.
	c.startContainer(pod, podCfg, "srv", "sh", "-c",
		`exec nc -ll -p 9000 -e sh -c 'read l; echo "got:$l"; seq 1 20000'`)
	c.startContainer(pod, podCfg, "once", "sh", "-c",
		`nc -l -p 9001 -e echo once-only; exec sleep 600`)

	want := "got:hello-through-portforward\n" + seqOutput(20000)
	var got, errText string
	ok := waitFor(60*time.Second, func() bool {
		got, errText = c.portForward(pod, 9000, "hello-through-portforward\n")
		return errText == "" && got == want
	})
	if !ok {
		t.Fatalf("port-forward to 9000: %d bytes (want %d), starting %q; error channel: %q", len(got), len(want), trim(got), errText)
	}
	// Again, on a new connection of the same mirror.
	if got, errText = c.portForward(pod, 9000, "again\n"); got != "got:again\n"+seqOutput(20000) || errText != "" {
		t.Errorf("second port-forward to 9000: %d bytes, starting %q; error channel: %q", len(got), trim(got), errText)
	}

	waitFor(30*time.Second, func() bool {
		got, errText = c.portForward(pod, 9001, "")
		return errText == "" && got == "once-only\n"
	})
	if got != "once-only\n" || errText != "" {
		t.Fatalf("port-forward to 9001: %q; error channel: %q", got, errText)
	}
	// That nc has exited: the port is closed in the guest, and in a few
	// seconds no longer on the host either.
	if !waitFor(20*time.Second, func() bool {
		got, errText = c.portForward(pod, 9001, "")
		return errText != ""
	}) {
		t.Errorf("port 9001, closed in the guest, still forwarded: %q", got)
	} else {
		t.Logf("port 9001 after it closed: %s", errText)
	}

	c.removePod(pod, true)
	if !waitFor(20*time.Second, func() bool { return qemuCount() == before }) {
		t.Errorf("VMs left after the pod's removal: %d", qemuCount()-before)
	}
	if procs := ctrdProcsOf(pod); len(procs) > 0 {
		t.Errorf("processes of %s left: %v", pod, procs)
	}
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
