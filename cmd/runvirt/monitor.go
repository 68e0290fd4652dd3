package main

import (
	"context"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// monitorCommand is internal: the per-sandbox process that owns the VM.
// Verbs start it; users never call it.
func (a *app) monitorCommand() *cli.Command {
	return &cli.Command{
		Name:      runtime.MonitorCommand,
		Hidden:    true,
		ArgsUsage: "<sandbox-id>",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			// fd 3 is the ready pipe of the verb that started us.
			ready := os.NewFile(3, "ready")
			return runtime.RunMonitor(runtime.Dir{Root: cmd.String("root"), ID: id}, ready, a.log)
		},
	}
}
