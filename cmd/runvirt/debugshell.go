package main

import (
	"context"
	"fmt"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) debugShellCommand() *cli.Command {
	return &cli.Command{
		Name:      "debug-shell",
		Usage:     "open a shell in the guest VM of a container's sandbox, outside the containers (needs debug_shell = true)",
		ArgsUsage: "<container-id>",
		Description: `Starts busybox's shell as root in the guest itself, to look at the guest's
processes, mounts, network and kernel log. The sandbox must have been
created with debug_shell = true in runvirt's config.toml.`,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return fmt.Errorf("debug-shell: one container id is required")
			}
			return runtime.DebugShell(ctx, a.globals(cmd), cmd.Args().First(), os.Stdin, os.Stdout, a.log)
		},
	}
}
