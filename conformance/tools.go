//go:build tools

// Package conformance pins the OCI runtime-tools validation suite so that
// run.sh can build it from the module cache with
//
//	go build github.com/opencontainers/runtime-tools/cmd/runtimetest
//	go build github.com/opencontainers/runtime-tools/validation/<name>
//
// It is a module of its own on purpose: runtime-tools v0.9.0 (the only
// version the proxy serves) needs an old runtime-spec and go-selinux, which
// the project's go.mod must not be held back to. This file is never built;
// it only keeps `go mod tidy` from dropping the suite's dependencies.
package conformance

import (
	_ "github.com/opencontainers/runtime-tools/cmd/runtimetest"
	_ "github.com/opencontainers/runtime-tools/validation/config_updates_without_affect"
	_ "github.com/opencontainers/runtime-tools/validation/create"
	_ "github.com/opencontainers/runtime-tools/validation/default"
	_ "github.com/opencontainers/runtime-tools/validation/delete"
	_ "github.com/opencontainers/runtime-tools/validation/delete_only_create_resources"
	_ "github.com/opencontainers/runtime-tools/validation/delete_resources"
	_ "github.com/opencontainers/runtime-tools/validation/hooks"
	_ "github.com/opencontainers/runtime-tools/validation/hooks_stdin"
	_ "github.com/opencontainers/runtime-tools/validation/hostname"
	_ "github.com/opencontainers/runtime-tools/validation/kill"
	_ "github.com/opencontainers/runtime-tools/validation/kill_no_effect"
	_ "github.com/opencontainers/runtime-tools/validation/killsig"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_blkio"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_cpus"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_devices"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_hugetlb"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_memory"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_network"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_pids"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_blkio"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_cpus"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_devices"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_hugetlb"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_memory"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_network"
	_ "github.com/opencontainers/runtime-tools/validation/linux_cgroups_relative_pids"
	_ "github.com/opencontainers/runtime-tools/validation/linux_devices"
	_ "github.com/opencontainers/runtime-tools/validation/linux_masked_paths"
	_ "github.com/opencontainers/runtime-tools/validation/linux_mount_label"
	_ "github.com/opencontainers/runtime-tools/validation/linux_ns_itype"
	_ "github.com/opencontainers/runtime-tools/validation/linux_ns_nopath"
	_ "github.com/opencontainers/runtime-tools/validation/linux_ns_path"
	_ "github.com/opencontainers/runtime-tools/validation/linux_ns_path_type"
	_ "github.com/opencontainers/runtime-tools/validation/linux_process_apparmor_profile"
	_ "github.com/opencontainers/runtime-tools/validation/linux_readonly_paths"
	_ "github.com/opencontainers/runtime-tools/validation/linux_rootfs_propagation"
	_ "github.com/opencontainers/runtime-tools/validation/linux_seccomp"
	_ "github.com/opencontainers/runtime-tools/validation/linux_sysctl"
	_ "github.com/opencontainers/runtime-tools/validation/linux_uid_mappings"
	_ "github.com/opencontainers/runtime-tools/validation/misc_props"
	_ "github.com/opencontainers/runtime-tools/validation/mounts"
	_ "github.com/opencontainers/runtime-tools/validation/pidfile"
	_ "github.com/opencontainers/runtime-tools/validation/poststart"
	_ "github.com/opencontainers/runtime-tools/validation/poststart_fail"
	_ "github.com/opencontainers/runtime-tools/validation/poststop"
	_ "github.com/opencontainers/runtime-tools/validation/poststop_fail"
	_ "github.com/opencontainers/runtime-tools/validation/prestart"
	_ "github.com/opencontainers/runtime-tools/validation/prestart_fail"
	_ "github.com/opencontainers/runtime-tools/validation/process"
	_ "github.com/opencontainers/runtime-tools/validation/process_capabilities"
	_ "github.com/opencontainers/runtime-tools/validation/process_capabilities_fail"
	_ "github.com/opencontainers/runtime-tools/validation/process_oom_score_adj"
	_ "github.com/opencontainers/runtime-tools/validation/process_rlimits"
	_ "github.com/opencontainers/runtime-tools/validation/process_rlimits_fail"
	_ "github.com/opencontainers/runtime-tools/validation/process_user"
	_ "github.com/opencontainers/runtime-tools/validation/root_readonly_true"
	_ "github.com/opencontainers/runtime-tools/validation/start"
	_ "github.com/opencontainers/runtime-tools/validation/state"
	_ "github.com/opencontainers/runtime-tools/validation/util"
)
