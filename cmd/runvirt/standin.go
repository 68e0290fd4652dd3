package main

import (
	"context"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// standInCommand is internal: the host process that stands in for one guest
// process (its pid is what clients wait on). create and exec start it.
func (a *app) standInCommand() *cli.Command {
	return &cli.Command{
		Name:      runtime.StandInCommand,
		Hidden:    true,
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "exec", Usage: "the exec id; none for the init process"},
			&cli.BoolFlag{Name: "tty", Usage: "the process has a terminal"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			runtime.LimitHelperMemory()
			// fd 3 is the ready pipe of the verb that started us.
			ready := os.NewFile(3, "ready")
			err = runtime.RunStandIn(a.globals(cmd), id, cmd.String("exec"), cmd.Bool("tty"), ready, a.log)
			if err != nil {
				// Our stderr is the container's: the error went to the ready
				// pipe and to the log, nowhere else.
				a.log.Error(err.Error())
				return exitCode(1)
			}
			return nil
		},
	}
}
