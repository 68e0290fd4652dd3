package main

import (
	"context"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) specCommand() *cli.Command {
	return &cli.Command{
		Name:  "spec",
		Usage: "create a new specification file (config.json) for a bundle",
		Description: `The spec command writes runc's default config.json to the bundle directory:
"sh" with a terminal, in new pid, network, ipc, uts and mount namespaces, with
root filesystem "rootfs" (read-only). Edit it, put a root filesystem in rootfs/
and start it with "runvirt run". An existing config.json is never overwritten.

With --rootless the spec is runc's rootless variant for the calling user.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory (default: the current directory)"},
			&cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container", Local: true},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			bundle := cmd.String("bundle")
			if bundle == "" {
				bundle = "."
			}
			return runtime.WriteSpec(bundle, cmd.Bool("rootless"))
		},
	}
}
