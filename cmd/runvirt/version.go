package main

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runvirt/runvirt/config"
	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// init makes --version print runc's lines (version, commit, spec, go), which
// scripts and clients that probe the runtime parse, and then what the VMs
// boot: the guest kernel's release and the agent's build.
func init() {
	cli.VersionPrinter = func(cmd *cli.Command) {
		w := cmd.Root().Writer
		fmt.Fprintf(w, "%s version %s\n", cmd.Root().Name, cmd.Root().Version)
		if c := vcsCommit(); c != "" {
			fmt.Fprintf(w, "commit: %s\n", c)
		}
		fmt.Fprintf(w, "spec: %s\n", specs.Version)
		fmt.Fprintf(w, "go: %s\n", goruntime.Version())
		// What the VMs boot, from the configuration in effect.
		cfg, err := config.Load(cmd.Root().String("config"))
		if err != nil {
			fmt.Fprintf(w, "guest: unknown (%v)\n", err)
			return
		}
		if rel, err := runtime.KernelRelease(cfg.Kernel); err != nil {
			fmt.Fprintf(w, "guest kernel: unknown (%v)\n", err)
		} else {
			fmt.Fprintf(w, "guest kernel: %s (%s)\n", rel, cfg.Kernel)
		}
		if v, err := runtime.AgentVersion(cfg.Initrd); err != nil {
			fmt.Fprintf(w, "agent: unknown (%v)\n", err)
		} else {
			fmt.Fprintf(w, "agent: %s (%s)\n", v, cfg.Initrd)
		}
	}
}

// vcsCommit is the commit the binary was built from, where the go tool
// recorded it ("-dirty" when the tree had changes).
func vcsCommit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
