package main

import (
	"context"
	"fmt"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal to the container's init process (default SIGTERM)",
		ArgsUsage: "<container-id> [signal]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the signal to every process of the container (its cgroup in the guest), even after its init exited"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args()
			if args.Len() < 1 || args.Len() > 2 {
				return fmt.Errorf("kill: want <container-id> [signal], got %d arguments", args.Len())
			}
			sigName := "SIGTERM"
			if args.Len() == 2 {
				sigName = args.Get(1)
			}
			sig, err := runtime.ParseSignal(sigName)
			if err != nil {
				return err
			}
			return runtime.Kill(ctx, a.globals(cmd), args.First(), sig, cmd.Bool("all"))
		},
	}
}
