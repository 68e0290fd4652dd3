package main

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"
)

// init makes --version print runc's lines (version, commit, spec, go), which
// scripts and clients that probe the runtime parse.
func init() {
	cli.VersionPrinter = func(cmd *cli.Command) {
		w := cmd.Root().Writer
		fmt.Fprintf(w, "%s version %s\n", cmd.Root().Name, cmd.Root().Version)
		if c := vcsCommit(); c != "" {
			fmt.Fprintf(w, "commit: %s\n", c)
		}
		fmt.Fprintf(w, "spec: %s\n", specs.Version)
		fmt.Fprintf(w, "go: %s\n", goruntime.Version())
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
