package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/runvirt/runvirt/agent/guest"
)

// AnnotationVM marks runvirt's features output: containers run in a VM.
const AnnotationVM = "io.github.runvirt.vm"

// Features describes what runvirt supports, in the runtime-spec's features
// format (what `runc features` prints). Mount options and capabilities are
// the guest agent's own tables, since the guest applies them. Cgroups are
// the guest's, v2 only; seccomp, AppArmor and SELinux are not applied yet.
func Features(version string) *features.Features {
	yes, no := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks: []string{
			string(hookPrestart), string(hookCreateRuntime), string(hookCreateContainer),
			string(hookStartContainer), string(hookPoststart), string(hookPoststop),
		},
		MountOptions: guest.MountOptions(),
		Linux: &features.Linux{
			// No user namespace: the guest is the isolation boundary and the
			// agent does not map ids.
			Namespaces: []string{
				string(specs.CgroupNamespace), string(specs.IPCNamespace), string(specs.MountNamespace),
				string(specs.NetworkNamespace), string(specs.PIDNamespace), string(specs.UTSNamespace),
			},
			Capabilities: guest.Capabilities(),
			Cgroup:       &features.Cgroup{V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no},
			// TODO(#7): seccomp
			Seccomp:         &features.Seccomp{Enabled: &no},
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
		Annotations: map[string]string{
			AnnotationVM:                                 "true",
			"io.github.runvirt.version":                  version,
			"org.opencontainers.runc.checkpoint.enabled": "false",
		},
	}
}
