package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "report what this host offers and what runvirt will use",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			r := runtime.Check(cfg)
			w := cmd.Root().Writer
			for _, it := range r.Items {
				mark := "ok  "
				if !it.OK {
					mark = "no  "
					if it.Fatal {
						mark = "FAIL"
					}
				}
				fmt.Fprintf(w, "%s %-12s %s\n", mark, it.Name, it.Info)
			}
			fmt.Fprintf(w, "will use:         %s\n", r.Use)
			if !r.CanRun {
				return errors.New("check: this host cannot run runvirt VMs (see FAIL lines above)")
			}
			return nil
		},
	}
}
