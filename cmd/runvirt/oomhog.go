package main

import (
	"context"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// oomHogCommand is internal: the child by which a stand-in makes its host
// memory cgroup see the OOM kill that happened in the guest (see
// runtime.ReflectOOM). It returns only if no OOM kill came.
func (a *app) oomHogCommand() *cli.Command {
	return &cli.Command{
		Name:   runtime.OOMHogCommand,
		Hidden: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runtime.OOMHog()
		},
	}
}
