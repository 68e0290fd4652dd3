package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/runvirt/runvirt/agent/guest"
)

// AnnotationVM marks runvirt's features output: containers run in a VM.
const AnnotationVM = "io.github.runvirt.vm"

// Features describes what runvirt supports, in the runtime-spec's features
// format (what `runc features` prints). Mount options, capabilities and the
// seccomp actions, operators, architectures and flags are the guest agent's
// own tables, since the guest applies them (seccomp without notify). Cgroups
// are the guest's, v2 only; AppArmor and SELinux are not applied.
func Features(version string) *features.Features {
	yes, no := true, false
	seccompFlags := guest.SeccompFlags()
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
			Seccomp: &features.Seccomp{
				Enabled:        &yes,
				Actions:        guest.SeccompActions(),
				Operators:      guest.SeccompOperators(),
				Archs:          guest.SeccompArchs(),
				KnownFlags:     seccompFlags,
				SupportedFlags: seccompFlags,
			},
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
