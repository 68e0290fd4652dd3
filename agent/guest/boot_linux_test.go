package guest

import (
	"github.com/runvirt/runvirt/agent"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    BootConfig
		wantErr string
	}{
		{
			name:    "defaults",
			cmdline: "console=ttyS0 quiet panic=-1",
			want:    BootConfig{Transport: TransportSerial},
		},
		{
			name:    "serial and 9p",
			cmdline: "console=ttyS0 quiet runvirt.transport=serial runvirt.share=9p\n",
			want:    BootConfig{Transport: TransportSerial, SharedFS: Share9P},
		},
		{
			name:    "vsock and virtio-fs with debug",
			cmdline: "runvirt.transport=vsock runvirt.vsock_port=1024 runvirt.share=virtio-fs runvirt.debug=1",
			want:    BootConfig{Transport: TransportVsock, VsockPort: 1024, SharedFS: ShareVirtioFS, Debug: true},
		},
		{
			name:    "bare debug",
			cmdline: "runvirt.debug",
			want:    BootConfig{Transport: TransportSerial, Debug: true},
		},
		{
			name:    "debug off",
			cmdline: "runvirt.debug=0",
			want:    BootConfig{Transport: TransportSerial},
		},
		{
			name:    "later key wins",
			cmdline: "runvirt.share=9p runvirt.share=virtio-fs",
			want:    BootConfig{Transport: TransportSerial, SharedFS: ShareVirtioFS},
		},
		{
			name:    "quoted values",
			cmdline: `foo="a b c" "runvirt.share=9p"`,
			want:    BootConfig{Transport: TransportSerial, SharedFS: Share9P},
		},
		{
			name:    "keys after -- belong to init",
			cmdline: "runvirt.share=9p -- runvirt.bogus=1",
			want:    BootConfig{Transport: TransportSerial, SharedFS: Share9P},
		},
		{
			name:    "other dotted keys are ignored",
			cmdline: "virtio_mmio.device=4K@0xfeb00e00:12 i8042.noaux runvirtx.foo=1",
			want:    BootConfig{Transport: TransportSerial},
		},
		{name: "unknown key", cmdline: "runvirt.transprot=serial", wantErr: `unknown key "runvirt.transprot"`},
		{name: "bad transport", cmdline: "runvirt.transport=tcp", wantErr: `runvirt.transport="tcp"`},
		{name: "bad share", cmdline: "runvirt.share=nfs", wantErr: `runvirt.share="nfs"`},
		{name: "bad port", cmdline: "runvirt.transport=vsock runvirt.vsock_port=x", wantErr: `runvirt.vsock_port="x"`},
		{name: "zero port", cmdline: "runvirt.vsock_port=0", wantErr: `runvirt.vsock_port="0"`},
		{name: "port too large", cmdline: "runvirt.vsock_port=4294967296", wantErr: "runvirt.vsock_port"},
		{name: "vsock without port", cmdline: "runvirt.transport=vsock", wantErr: "needs runvirt.vsock_port"},
		{
			name:    "template",
			cmdline: "runvirt.share=9p runvirt.template=1",
			want:    BootConfig{Transport: TransportSerial, SharedFS: Share9P, Template: true},
		},
		{name: "bad template", cmdline: "runvirt.template=yes", wantErr: `runvirt.template="yes"`},
		{name: "bad debug", cmdline: "runvirt.debug=yes", wantErr: `runvirt.debug="yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.cmdline)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCmdline(%q) error = %v, want one containing %q", tt.cmdline, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "parse kernel command line: ") {
					t.Errorf("error %q lacks context", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.cmdline, err)
			}
			if got != tt.want {
				t.Errorf("ParseCmdline(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc\n", []string{"a", "b", "c"}},
		{`a="x y" "b c"`, []string{"a=x y", "b c"}},
		{"a -- b", []string{"a"}},
		{"a --b", []string{"a", "--b"}},
	}
	for _, tt := range tests {
		if got := splitCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestModuleParams(t *testing.T) {
	cmdline := `console=ttyS0 virtio_mmio.device=4K@0xfeb00e00:12 virtio-mmio.device=4K@0xfeb00c00:13 ` +
		`virtio_mmio.foo="a b" virtio_mmio. virtio_mmiox.device=1 runvirt.share=9p`
	want := `device=4K@0xfeb00e00:12 device=4K@0xfeb00c00:13 foo="a b"`
	if got := moduleParams(cmdline, "virtio-mmio"); got != want {
		t.Errorf("moduleParams(virtio-mmio) = %q, want %q", got, want)
	}
	if got := moduleParams(cmdline, "virtio_pci"); got != "" {
		t.Errorf("moduleParams(virtio_pci) = %q, want none", got)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/modules/6.1.0-56-amd64/kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"/lib/modules/6.1.0-56-amd64/kernel/fs/9p/9p.ko":                          "9p",
		"overlay.ko": "overlay",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDevNum(t *testing.T) {
	major, minor, err := parseDevNum("244:1\n")
	if err != nil || major != 244 || minor != 1 {
		t.Errorf("parseDevNum = %d, %d, %v; want 244, 1, nil", major, minor, err)
	}
	for _, bad := range []string{"", "244", "a:1", "1:b"} {
		if _, _, err := parseDevNum(bad); err == nil {
			t.Errorf("parseDevNum(%q) succeeded", bad)
		}
	}
}

// fakePorts lays out a /sys/class/virtio-ports look-alike.
func fakePorts(t *testing.T, ports map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for port, name := range ports {
		if err := os.MkdirAll(filepath.Join(dir, port), 0o755); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if err := os.WriteFile(filepath.Join(dir, port, "name"), []byte(name+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, port, "dev"), []byte("244:1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindVirtioPort(t *testing.T) {
	sys := fakePorts(t, map[string]string{"vport0p0": "", "vport0p1": "other", "vport1p1": agent.AgentPortName})
	got, err := findVirtioPort(sys, agent.AgentPortName)
	if err != nil || got != "vport1p1" {
		t.Errorf("findVirtioPort = %q, %v; want vport1p1", got, err)
	}
	got, err = findVirtioPort(filepath.Join(sys, "missing"), agent.AgentPortName)
	if err != nil || got != "" {
		t.Errorf("findVirtioPort(no dir) = %q, %v; want none yet", got, err)
	}
}

func TestOpenVirtioPort(t *testing.T) {
	sys := fakePorts(t, map[string]string{"vport0p1": agent.AgentPortName})
	dev := t.TempDir()
	// A regular file stands in for the device node devtmpfs made.
	if err := os.WriteFile(filepath.Join(dev, "vport0p1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openVirtioPort(sys, dev, agent.AgentPortName, time.Second)
	if err != nil {
		t.Fatalf("openVirtioPort: %v", err)
	}
	f.Close()

	_, err = openVirtioPort(sys, dev, "no.such.port", 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "virtserialport") {
		t.Errorf("openVirtioPort(missing) error = %v, want a hint at the QEMU device", err)
	}
}

// A wake without enough seed or without the host's time is refused before
// it touches the clock or the random pool.
func TestApplyWakeRefusesBadWake(t *testing.T) {
	for _, w := range []agent.Wake{
		{UnixNano: 1, Seed: make([]byte, agent.WakeSeedBytes-1)},
		{UnixNano: 0, Seed: make([]byte, agent.WakeSeedBytes)},
	} {
		if err := applyWake(w); err == nil {
			t.Errorf("wake %+v accepted", w)
		}
	}
}
