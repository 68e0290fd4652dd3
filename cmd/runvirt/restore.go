package main

import (
	"context"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// restoreCommand accepts runc's restore flags, whatever they are, so that
// the refusal, not a flag error, is what the caller sees.
func (a *app) restoreCommand() *cli.Command {
	return &cli.Command{
		Name:            "restore",
		Usage:           "not supported: restore a container from a checkpoint (runc uses CRIU)",
		ArgsUsage:       "[runc's restore options] <container-id>",
		SkipFlagParsing: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runtime.ErrRestoreUnsupported
		},
	}
}
