package hypervisor

import (
	"os"
	"os/exec"
	"syscall"
)

// VirtiofsdCommand returns the virtiofsd process serving dir on the
// listening vhost-user socket ln (passed as its fd 3: the socket listens
// before virtiofsd starts, so QEMU can never find it bound but not yet
// listening), not yet started. It runs in its own sandbox (namespace mode:
// its own mount, pid and net namespaces, pivot_root into dir), so it only
// ever sees the share. Like QEMU it dies with the process that started it.
func VirtiofsdCommand(virtiofsd string, ln *os.File, dir string) *exec.Cmd {
	cmd := exec.Command(virtiofsd,
		"--fd=3",
		"-o", "source="+dir,
		"-o", "cache=auto",
		"-o", "sandbox=namespace",
		"-o", "log_level=warn",
	)
	cmd.ExtraFiles = []*os.File{ln}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
