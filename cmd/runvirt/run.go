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
		Usage:     "create and start a container in a new micro-VM",
		ArgsUsage: "<container-id>",
		Description: `The container's process runs inside its own QEMU micro-VM. In the
foreground its stdin, stdout and stderr are relayed (stdout and stderr stay
separate), signals sent to runvirt are forwarded to it, and runvirt exits
with its exit status (128+N when signal N killed it); when it exits the VM is
stopped and nothing is left behind. With --detach runvirt returns once the
process has started.`,
		Flags: append(createFlags(),
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return once the process has started"},
		),
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
				PidFile: cmd.String("pid-file"), ConsoleSocket: cmd.String("console-socket"),
				Detach: cmd.Bool("detach"), Log: a.log,
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
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
