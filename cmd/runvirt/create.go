package main

import (
	"context"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// createFlags are shared by create and run, as in runc.
func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the OCI bundle"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the pid clients wait on (the stand-in process) to this file"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the console's pty master (terminal containers)"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "accepted for runc compatibility: file descriptors cannot cross into the VM"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility (the guest always uses pivot_root)"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility"},
	}
}

func (a *app) createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a container in a new micro-VM, without starting its process",
		ArgsUsage: "<container-id>",
		Description: `Boots the container's VM and prepares its process, which "runvirt start"
then starts. The pid written to --pid-file is the container's stand-in: a
host process that relays the container's stdio, forwards signals and exits
with the container process's status.`,
		Flags: createFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			_, err = runtime.Create(ctx, runtime.CreateOptions{
				Globals: a.globals(cmd), Config: cfg, Bundle: cmd.String("bundle"), ID: id,
				PidFile: cmd.String("pid-file"), ConsoleSocket: cmd.String("console-socket"),
				PreserveFDs: cmd.Int("preserve-fds"), Log: a.log,
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			return err
		},
	}
}
