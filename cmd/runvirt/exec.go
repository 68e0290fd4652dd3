package main

import (
	"context"
	"fmt"
	"os"

	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

var one = 1

func (a *app) execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a new process inside a running container",
		ArgsUsage: "<container-id> <command> [args...]",
		// Everything after the container id belongs to the command.
		StopOnNthArg: &one,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "JSON file with the process spec (other process flags are ignored)"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal"},
			&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the terminal's pty master"},
			&cli.StringFlag{Name: "pid-file", Usage: "write the pid of the process clients wait on to this file"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return once the process has started"},
			&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set an environment variable (KEY=VALUE)"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID] to run as"},
			&cli.StringSliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional group ids"},
			&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability"},
			&cli.BoolFlag{Name: "no-new-privs", Usage: "set no_new_privileges"},
			&cli.IntFlag{Name: "preserve-fds", Usage: "accepted for runc compatibility: file descriptors cannot cross into the VM"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) < 1 {
				return fmt.Errorf("exec: a container id is required")
			}
			g := a.globals(cmd)
			c, err := runtime.Load(g, args[0], a.log)
			if err != nil {
				return err
			}
			base, err := c.Spec()
			if err != nil {
				return err
			}
			p, err := runtime.BuildExecProcess(base, runtime.ExecFlags{
				ProcessFile: cmd.String("process"), Args: args[1:], Cwd: cmd.String("cwd"),
				Env: cmd.StringSlice("env"), User: cmd.String("user"),
				AdditionalGids: cmd.StringSlice("additional-gids"), Caps: cmd.StringSlice("cap"),
				NoNewPrivs: cmd.Bool("no-new-privs"), Tty: cmd.Bool("tty"),
			})
			if err != nil {
				return err
			}
			status, err := runtime.Exec(ctx, runtime.ExecOptions{
				Globals: g, ID: args[0], Process: p, Detach: cmd.Bool("detach"),
				PidFile: cmd.String("pid-file"), ConsoleSocket: cmd.String("console-socket"),
				Log: a.log, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			if err != nil {
				return err
			}
			if status != 0 {
				return exitCode(status)
			}
			return nil
		},
	}
}
