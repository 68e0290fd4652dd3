package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) featuresCommand() *cli.Command {
	return &cli.Command{
		Name:  "features",
		Usage: "show the enabled features",
		Description: `Show what runvirt supports, in the runtime-spec's features format (as
"runc features" does). The format is the runtime-spec's features.md.`,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			b, err := json.MarshalIndent(runtime.Features(version), "", "    ")
			if err != nil {
				return fmt.Errorf("features: %w", err)
			}
			_, err = fmt.Fprintln(cmd.Root().Writer, string(b))
			return err
		},
	}
}
