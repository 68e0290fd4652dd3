package main

import (
	"context"
	"encoding/json"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) stateCommand() *cli.Command {
	return &cli.Command{
		Name:      "state",
		Usage:     "print the state of a container as JSON",
		ArgsUsage: "<container-id>",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			c, err := runtime.Load(a.globals(cmd), id, a.log)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(c.RuncState(ctx), "", "  ")
			if err != nil {
				return err
			}
			_, err = cmd.Root().Writer.Write(append(b, '\n'))
			return err
		},
	}
}
