package runtime

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// After CloseInheritedFDs, an fd this process holds without close-on-exec
// (as one a caller left open would be) no longer reaches a child, while
// stdio and ExtraFiles still do.
func TestCloseInheritedFDs(t *testing.T) {
	f, err := os.Open("/etc")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd())) // unix.Dup leaves close-on-exec off
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Fatal("dup set close-on-exec")
	}
	if err := CloseInheritedFDs(); err != nil {
		t.Fatal(err)
	}
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Error("an inherited fd kept close-on-exec off")
	}
	extra, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	cmd := exec.Command("ls", "-l", "/proc/self/fd/")
	cmd.ExtraFiles = []*os.File{extra}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "-> /etc") {
		t.Errorf("the inherited fd reached a child:\n%s", out)
	}
	if !strings.Contains(string(out), "3 -> /") {
		t.Errorf("ExtraFiles did not reach the child:\n%s", out)
	}
}
