package hypervisor

import (
	"os/exec"
	"syscall"
)

// VirtiofsdCommand returns the virtiofsd process serving dir on socket, not
// yet started. It runs in its own sandbox (namespace mode: its own mount, pid
// and net namespaces, pivot_root into dir), so it only ever sees the share.
// Like QEMU it dies with the process that started it.
func VirtiofsdCommand(virtiofsd, socket, dir string) *exec.Cmd {
	cmd := exec.Command(virtiofsd,
		"--socket-path="+socket,
		"-o", "source="+dir,
		"-o", "cache=auto",
		"-o", "sandbox=namespace",
		"-o", "log_level=warn",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
