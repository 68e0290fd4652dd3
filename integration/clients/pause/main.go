// Command pause is the process of a pod's sandbox container in the client
// tests: it holds the pod's namespaces, reaps the orphans it inherits as the
// pod's PID 1, and exits 0 on SIGTERM or SIGINT, like Kubernetes' own pause
// (which cannot be pulled here: no registry).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
