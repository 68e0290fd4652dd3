package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// oomHogCommand is internal: the child by which a stand-in makes its host
// memory cgroup see the OOM kill that happened in the guest (see
// runtime.ReflectOOM). It returns only if no OOM kill came.
func (a *app) oomHogCommand() *cli.Command {
	return &cli.Command{
		Name:      runtime.OOMHogCommand,
		Hidden:    true,
		ArgsUsage: "<max-mib>",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			maxMiB, err := strconv.ParseUint(cmd.Args().First(), 10, 64)
			if err != nil || cmd.Args().Len() != 1 {
				return fmt.Errorf("%s: want one size in MiB, got %q", runtime.OOMHogCommand, cmd.Args().Slice())
			}
			return runtime.OOMHog(maxMiB)
		},
	}
}
