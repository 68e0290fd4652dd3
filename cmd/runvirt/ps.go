package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "list the processes of a container (pids as the guest sees them)",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() < 1 {
				return fmt.Errorf("ps: a container id is required")
			}
			w := cmd.Root().Writer
			switch cmd.String("format") {
			case "json":
				// Host pids, as runc gives (see runtime.HostPids).
				pids, err := runtime.HostPids(a.globals(cmd), cmd.Args().First(), a.log)
				if err != nil {
					return err
				}
				return json.NewEncoder(w).Encode(pids)
			case "table":
				procs, err := runtime.Ps(ctx, a.globals(cmd), cmd.Args().First(), a.log)
				if err != nil {
					return err
				}
				fmt.Fprintln(w, "PID (in the guest)")
				for _, p := range procs {
					fmt.Fprintln(w, p)
				}
				return nil
			}
			return fmt.Errorf("ps: invalid format %q (table, json)", cmd.String("format"))
		},
	}
}
