package main

import (
	"context"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// checkpointCommand accepts runc's checkpoint flags, whatever they are, so
// that the refusal, not a flag error, is what the caller sees.
func (a *app) checkpointCommand() *cli.Command {
	return &cli.Command{
		Name:            "checkpoint",
		Usage:           "not supported: checkpoint a running container (runc uses CRIU)",
		ArgsUsage:       "[runc's checkpoint options] <container-id>",
		SkipFlagParsing: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runtime.ErrCheckpointUnsupported
		},
	}
}
