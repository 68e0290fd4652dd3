package main

import (
	"context"
	"os"
	"strconv"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) updateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "change the resource limits of a container (inside its VM)",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "JSON file of linux resources, or - for stdin"},
			&cli.StringFlag{Name: "memory", Usage: "memory limit in bytes"},
			&cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit in bytes"},
			&cli.StringFlag{Name: "cpu-shares", Usage: "relative CPU weight"},
			&cli.StringFlag{Name: "cpu-quota", Usage: "CPU time in microseconds per period"},
			&cli.StringFlag{Name: "cpu-period", Usage: "CPU period in microseconds"},
			&cli.StringFlag{Name: "pids-limit", Usage: "maximum number of processes"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneID(cmd)
			if err != nil {
				return err
			}
			f := runtime.UpdateFlags{ResourcesFile: cmd.String("resources")}
			for name, dst := range map[string]**int64{"memory": &f.Memory, "memory-swap": &f.MemorySwap, "cpu-quota": &f.CPUQuota, "pids-limit": &f.PidsLimit} {
				if *dst, err = runtime.ParseOptionalInt(name, cmd.String(name)); err != nil {
					return err
				}
			}
			for name, dst := range map[string]**uint64{"cpu-shares": &f.CPUShares, "cpu-period": &f.CPUPeriod} {
				v, err := runtime.ParseOptionalInt(name, cmd.String(name))
				if err != nil {
					return err
				}
				if v != nil {
					u, err := strconv.ParseUint(cmd.String(name), 10, 64)
					if err != nil {
						return err
					}
					*dst = &u
				}
			}
			return runtime.Update(ctx, a.globals(cmd), id, f, os.Stdin, a.log)
		},
	}
}
