package guest

// The terminal of a container process. As in runc, the pty comes from the
// container's own devpts instance: the child opens /dev/ptmx once it sees the
// container's mounts (the init after its pivot_root, an exec after joining the
// mount namespace), makes the slave its controlling terminal and stdio, and
// hands the master to the parent over a socket before execve. A pty of the
// agent's devpts would not exist inside the container: ttyname(3) would find
// nothing (`tty` says "not a tty") and /dev/console would point nowhere.

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupConsole runs in the child. It opens a pty in the container's devpts,
// applies size, makes the slave fds 0-2 and, with ctty, the controlling
// terminal (the child is a session leader: see startChild; an exec's
// workload takes it itself, see forkWorkload), binds it to /dev/console when
// bind is set (the init), and sends the master to the parent on sock.
func setupConsole(sock int, size *specs.Box, bind, ctty bool) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open container /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	// The peer is opened through the master, so no path lookup can land on
	// another devpts instance.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return fmt.Errorf("open pty slave: %w", errno)
	}
	slave := int(r)
	defer unix.Close(slave)
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	if ctty {
		if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("set controlling terminal: %w", err)
		}
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("make pty stdio: %w", err)
		}
	}
	if bind {
		if err := bindConsole("/dev/pts/" + strconv.FormatUint(uint64(n), 10)); err != nil {
			return err
		}
	}
	if err := unix.Sendmsg(sock, []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("send pty master: %w", err)
	}
	return nil
}

// bindConsole binds the pty slave to /dev/console. It runs after the pivot,
// so slave is a path of the container's devpts and /dev/console is resolved
// inside the container.
func bindConsole(slave string) error {
	const dst = "/dev/console"
	if err := createMountpoint(dst, slave, true); err != nil {
		return fmt.Errorf("bind %s: %w", dst, err)
	}
	if err := unix.Mount(slave, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s to %s: %w", slave, dst, err)
	}
	return nil
}

// consoleSocket returns a connected pair for the master's transfer: the
// parent's end as a descriptor and the child's as a file to pass to it.
func consoleSocket() (parent int, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("console socket: %w", err)
	}
	return fds[0], os.NewFile(uintptr(fds[1]), "console"), nil
}

// recvConsole takes the pty master from the parent's end of the console
// socket. It is called once the child has exec'd (or died), after it sent
// the master if it ever will, so it never blocks.
func recvConsole(sock int) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	if n == 0 || oobn == 0 {
		return nil, errors.New("receive pty master: the child sent none")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty master: got %d control messages", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive pty master: got %d descriptors", len(fds))
	}
	// Non-blocking, so that the os.File is pollable and read deadlines (the
	// drain after exit) work.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "ptmx"), nil
}

// setWinsize resizes the pty of master. It goes through SyscallConn: Fd()
// would put the file back into blocking mode and defeat its read deadline.
func setWinsize(master *os.File, ws *unix.Winsize) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws)
	}); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ioErr != nil {
		return fmt.Errorf("resize pty: %w", ioErr)
	}
	return nil
}
