package main

import (
	"context"
	"time"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "print the container's resource usage as JSON events",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "stats", Usage: "print the stats once and exit"},
			&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats events (oom events come as the kills happen)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			return runtime.Events(ctx, a.globals(cmd), id, cmd.Bool("stats"), cmd.Duration("interval"), cmd.Root().Writer, a.log)
		},
	}
}
