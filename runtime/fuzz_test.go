package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/runvirt/runvirt/agent"
)

// FuzzBundleSpec: whatever a bundle's config.json holds, loading it and
// translating it for the guest and the stand-in never panics, and a spec it
// accepts keeps the guest out of the host's network namespace and its
// hooks.
func FuzzBundleSpec(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"ipc","path":"/proc/1/ns/ipc"}]}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},"process":{"args":["true"],"cwd":"/","terminal":true},"hooks":{"prestart":[{"path":"/bin/true"}]},"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"pod"},"linux":{"resources":{"memory":{"limit":1073741824},"cpu":{"quota":250000,"period":100000,"cpus":"0-3"}}}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["x"]},"mounts":[{"destination":"/data","type":"bind","source":"data","options":["rbind","ro"]}],"annotations":{"io.kubernetes.cri-o.ContainerType":"sandbox"}}`))
	f.Add([]byte(`{"ociVersion":"2.0.0"}`))
	f.Add([]byte(`null`))
	bundle := f.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, config []byte) {
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := LoadBundle(bundle)
		if err != nil {
			return
		}
		if _, err := SandboxOf("c1", b.Spec.Annotations); err != nil {
			return
		}
		checkConsole(b.Spec, "", false)
		nsPlanOf(b.Spec)
		SandboxConfig{VCPUs: 1, MemoryMiB: 256}.SizeFor(b.Spec, 2)
		g := forGuest(b.Spec, sandboxNamespaces(b.Spec, os.Getpid()))
		if g.Hooks != nil {
			t.Error("hooks reached the guest's spec")
		}
		if g.Linux != nil {
			for _, ns := range g.Linux.Namespaces {
				if ns.Type == "network" {
					t.Error("a network namespace reached the guest's spec")
				}
				if ns.Path != "" && ns.Path != agent.SandboxNamespace {
					t.Errorf("a host namespace path reached the guest's spec: %s", ns.Path)
				}
			}
		}
	})
}
