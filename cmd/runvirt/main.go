// Command runvirt is a runc-compatible OCI runtime that runs every pod in its
// own QEMU micro-VM. This package is wiring only: the logic lives in
// runtime/, hypervisor/ and agent/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/runvirt/runvirt/config"
	"github.com/runvirt/runvirt/runtime"
	"github.com/urfave/cli/v3"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

// exitCode is returned by an action whose process must exit with a given
// status (the workload's) without an error message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// app holds what the global flags set up for every command.
type app struct {
	log   *slog.Logger
	fdErr error // from marking inherited fds close-on-exec: fatal
}

func main() {
	// Before anything can start a process: nothing the caller left open
	// may reach the processes runvirt starts.
	fdErr := runtime.CloseInheritedFDs()
	a := &app{log: slog.New(slog.NewTextHandler(os.Stderr, nil)), fdErr: fdErr}
	root := &cli.Command{
		Name:    "runvirt",
		Usage:   "run OCI containers inside QEMU micro-VMs (a runc-compatible runtime)",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: "/run/runvirt", Usage: "directory for the state of containers"},
			&cli.StringFlag{Name: "log", Usage: "append log lines to this file instead of stderr"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default $RUNVIRT_CONFIG, then " + config.SystemPath + ")"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "accepted for runc compatibility"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "accepted for runc compatibility"},
			&cli.StringFlag{Name: "criu", Usage: "accepted for runc compatibility (checkpoint is not supported)"},
		},
		Before: a.setup,
		Commands: []*cli.Command{
			a.createCommand(),
			a.startCommand(),
			a.stateCommand(),
			a.killCommand(),
			a.deleteCommand(),
			a.runCommand(),
			a.execCommand(),
			a.psCommand(),
			a.listCommand(),
			a.pauseCommand(),
			a.resumeCommand(),
			a.updateCommand(),
			a.eventsCommand(),
			a.standInCommand(),
			a.checkCommand(),
			a.debugShellCommand(),
			a.specCommand(),
			a.featuresCommand(),
			a.checkpointCommand(),
			a.restoreCommand(),
			a.monitorCommand(),
			a.oomHogCommand(),
		},
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	err := root.Run(context.Background(), os.Args)
	var code exitCode
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	default:
		a.log.Error(err.Error())
		if a.logsElsewhere() {
			fmt.Fprintln(os.Stderr, "runvirt: "+err.Error())
		}
		os.Exit(1)
	}
}

// logToFile is set when --log sends the log to a file, so fatal errors go
// to stderr as well.
var logToFile bool

func (a *app) logsElsewhere() bool { return logToFile }

// setup builds the logger from --log, --log-format and --debug. Errors go to
// the log file in runc's JSON shape ({"level":"error","msg":...,"time":...}),
// which is what containerd shows the user.
func (a *app) setup(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	if a.fdErr != nil {
		return ctx, a.fdErr
	}
	var w io.Writer = os.Stderr
	if p := cmd.String("log"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return ctx, fmt.Errorf("open log file: %w", err)
		}
		w = f
		logToFile = true
	}
	level := slog.LevelInfo
	if cmd.Bool("debug") {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: runcShape}
	switch cmd.String("log-format") {
	case "json":
		a.log = slog.New(slog.NewJSONHandler(w, opts))
	case "text":
		a.log = slog.New(slog.NewTextHandler(w, opts))
	default:
		return ctx, fmt.Errorf("log-format: %q is not one of text, json", cmd.String("log-format"))
	}
	// Every verb and the processes runvirt starts see one spelling of the
	// root: the kernel's (see runtime.ResolveRoot).
	root, err := runtime.ResolveRoot(cmd.String("root"))
	if err != nil {
		return ctx, err
	}
	if err := cmd.Set("root", root); err != nil {
		return ctx, fmt.Errorf("root: %w", err)
	}
	return ctx, nil
}

// runcShape writes levels in lower case and times in RFC 3339, as runc's
// logrus output does.
func runcShape(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		lv := strings.ToLower(a.Value.String())
		if lv == "warn" {
			lv = "warning"
		}
		return slog.String("level", lv)
	case slog.TimeKey:
		return slog.String("time", a.Value.Time().Format(time.RFC3339Nano))
	}
	return a
}

func (a *app) globals(cmd *cli.Command) runtime.Globals {
	return runtime.Globals{
		Root:      cmd.String("root"),
		Debug:     cmd.Bool("debug"),
		LogFormat: cmd.String("log-format"),
	}
}

func (a *app) config(cmd *cli.Command) (*config.Config, error) {
	c, err := config.Load(cmd.String("config"))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// oneID returns the single container-id argument.
func oneID(cmd *cli.Command) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", fmt.Errorf("%s: exactly one container id is required, got %d arguments", cmd.Name, cmd.Args().Len())
	}
	return cmd.Args().First(), nil
}
