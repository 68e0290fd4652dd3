package runtime

import (
	"encoding/json"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestFeaturesJSON(t *testing.T) {
	b, err := json.Marshal(Features("1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	// Decode into plain maps: what a client that does not share our types sees.
	var f struct {
		OCIVersionMin string            `json:"ociVersionMin"`
		OCIVersionMax string            `json:"ociVersionMax"`
		Hooks         []string          `json:"hooks"`
		MountOptions  []string          `json:"mountOptions"`
		Annotations   map[string]string `json:"annotations"`
		Linux         struct {
			Namespaces   []string                   `json:"namespaces"`
			Capabilities []string                   `json:"capabilities"`
			Cgroup       map[string]bool            `json:"cgroup"`
			Seccomp      map[string]json.RawMessage `json:"seccomp"`
			Apparmor     map[string]bool            `json:"apparmor"`
			Selinux      map[string]bool            `json:"selinux"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("features is not valid JSON: %v\n%s", err, b)
	}
	if f.OCIVersionMin != "1.0.0" || f.OCIVersionMax != specs.Version {
		t.Errorf("oci versions = %q..%q", f.OCIVersionMin, f.OCIVersionMax)
	}
	if len(f.Hooks) != 6 || !slices.Contains(f.Hooks, "prestart") || !slices.Contains(f.Hooks, "poststop") {
		t.Errorf("hooks = %v", f.Hooks)
	}
	for _, o := range []string{"bind", "rbind", "ro", "nosuid", "rprivate", "tmpcopyup"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("mountOptions lacks %q: %v", o, f.MountOptions)
		}
	}
	if !slices.IsSorted(f.MountOptions) {
		t.Errorf("mountOptions not sorted: %v", f.MountOptions)
	}
	if !slices.Contains(f.Linux.Namespaces, "pid") || slices.Contains(f.Linux.Namespaces, "user") {
		t.Errorf("namespaces = %v", f.Linux.Namespaces)
	}
	if len(f.Linux.Capabilities) < 41 || f.Linux.Capabilities[0] != "CAP_CHOWN" {
		t.Errorf("capabilities = %v", f.Linux.Capabilities)
	}
	wantCg := map[string]bool{"v1": false, "v2": true, "systemd": false, "systemdUser": false}
	for k, v := range wantCg {
		if got, ok := f.Linux.Cgroup[k]; !ok || got != v {
			t.Errorf("cgroup.%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if f.Linux.Apparmor["enabled"] || f.Linux.Selinux["enabled"] {
		t.Errorf("apparmor %v selinux %v: want both disabled", f.Linux.Apparmor, f.Linux.Selinux)
	}
	if string(f.Linux.Seccomp["enabled"]) != "true" {
		t.Errorf("seccomp enabled = %s, want true", f.Linux.Seccomp["enabled"])
	}
	for key, want := range map[string][]string{
		"actions":        {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
		"operators":      {"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"},
		"archs":          {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"knownFlags":     {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"},
		"supportedFlags": {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"},
	} {
		var got []string
		if err := json.Unmarshal(f.Linux.Seccomp[key], &got); err != nil {
			t.Errorf("seccomp.%s: %v", key, err)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("seccomp.%s lacks %s: %v", key, w, got)
			}
		}
		if slices.Contains(got, "SCMP_ACT_NOTIFY") {
			t.Errorf("seccomp.%s has SCMP_ACT_NOTIFY, which the agent does not support", key)
		}
	}
	if f.Annotations[AnnotationVM] != "true" || f.Annotations["io.github.runvirt.version"] != "1.2.3" {
		t.Errorf("annotations = %v", f.Annotations)
	}
}
