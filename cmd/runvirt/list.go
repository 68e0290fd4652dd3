package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

func (a *app) listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the containers under --root",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print the ids only"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			states, err := runtime.List(ctx, a.globals(cmd), a.log)
			if err != nil {
				return err
			}
			w := cmd.Root().Writer
			if cmd.Bool("quiet") {
				for _, s := range states {
					fmt.Fprintln(w, s.ID)
				}
				return nil
			}
			switch cmd.String("format") {
			case "json":
				if states == nil {
					states = []runtime.RuncState{}
				}
				return json.NewEncoder(w).Encode(states)
			case "table":
				tw := tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)
				fmt.Fprint(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, s := range states {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				return tw.Flush()
			}
			return fmt.Errorf("list: invalid format %q (table, json)", cmd.String("format"))
		},
	}
}
