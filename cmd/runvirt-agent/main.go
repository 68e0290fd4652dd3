// Command runvirt-agent is the guest's init (PID 1): it boots the guest,
// then serves the host's requests and starts the container processes. It is
// built static (CGO_ENABLED=0) and is the only program in the initramfs.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/agent/guest"
	"golang.org/x/sys/unix"
)

// version is set at build time.
var version = "0.1.0-dev"

func main() {
	// A re-exec'd container child never returns from here.
	guest.MaybeRunChild()

	cfg, conn, err := guest.Boot()
	if err != nil {
		fail(err)
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv := guest.NewServer(log, guest.PowerOff)
	hello := agent.Hello{AgentVersion: version, Kernel: kernelRelease(), BootMillis: bootMillis()}
	err = srv.Serve(conn, hello)
	// The host went away: nothing is left to serve, so stop the VM rather
	// than leave it running unreachable.
	log.Error("agent stopped serving", "err", err)
	guest.PowerOff()
}

func bootMillis() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e6
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}

// fail reports a boot failure on the console and powers off: PID 1 must
// never exit (the kernel would panic and the host would only see a hang).
func fail(err error) {
	fmt.Fprintf(os.Stderr, "runvirt-agent: boot failed: %v\n", err)
	guest.PowerOff()
}
