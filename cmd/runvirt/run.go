package main

import (
	"context"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "create and run a container in a new micro-VM, in the foreground",
		ArgsUsage: "<container-id>",
		Description: `The container's process runs inside its own QEMU micro-VM. Its stdin,
stdout and stderr are relayed (stdout and stderr stay separate), signals sent
to runvirt are forwarded to it, and runvirt exits with its exit status (128+N
when signal N killed it). When it exits the VM is stopped and nothing is left
behind.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the OCI bundle"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			status, err := runtime.Run(ctx, runtime.RunOptions{
				Globals: a.globals(cmd), Config: cfg, Bundle: cmd.String("bundle"), ID: id,
				Log: a.log, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			if err != nil {
				return err
			}
			if status != 0 {
				return exitCode(status)
			}
			return nil
		},
	}
}
