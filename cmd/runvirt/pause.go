package main

import (
	"context"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) pauseCommand() *cli.Command {
	return &cli.Command{
		Name:      "pause",
		Usage:     "freeze every process of a running container",
		ArgsUsage: "<container-id>",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			return runtime.Pause(ctx, a.globals(cmd), id, a.log)
		},
	}
}

func (a *app) resumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "thaw a paused container",
		ArgsUsage: "<container-id>",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			return runtime.Resume(ctx, a.globals(cmd), id, a.log)
		},
	}
}
