package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ParseSignal accepts what runc's kill does: a number, or a name with or
// without the SIG prefix, in any case ("9", "KILL", "SIGKILL", "sigterm"),
// and RTMIN+N / RTMAX-N.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal number %d", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		dir    int
	}{{"SIGRTMIN+", 34, 1}, {"SIGRTMAX-", 64, -1}} {
		if rest, ok := strings.CutPrefix(name, rt.prefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n <= 30 {
				return unix.Signal(rt.base + rt.dir*n), nil
			}
		}
	}
	switch name {
	case "SIGRTMIN":
		return 34, nil
	case "SIGRTMAX":
		return 64, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
