package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// AgentVersion reads the version of the guest agent that an initramfs
// holds (/etc/runvirt/agent.version, written by guest-image/build.sh),
// without booting it.
func AgentVersion(initrd string) (string, error) {
	f, err := os.Open(initrd)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := cpioFile(f, "etc/runvirt/agent.version")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// maxCpioFile bounds what cpioFile reads for one file.
const maxCpioFile = 256 << 20

// cpioFile returns the contents of the file name (with or without a leading
// "./") in an initramfs: newc cpio archives, one after the other, each
// padded with zeros.
func cpioFile(r io.Reader, name string) ([]byte, error) {
	br := bufio.NewReader(r)
	hdr := make([]byte, 110)
	for {
		// Skip the padding between archives.
		for {
			b, err := br.Peek(4)
			if err != nil {
				return nil, fmt.Errorf("initramfs: no %s (is it compressed?): %w", name, err)
			}
			if !bytes.Equal(b, []byte{0, 0, 0, 0}) {
				break
			}
			br.Discard(4)
		}
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("initramfs: no %s (is it compressed?): %w", name, err)
		}
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return nil, errors.New("initramfs: not an uncompressed newc cpio archive")
		}
		field := func(i int) (int64, error) {
			return strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
		}
		fileSize, err1 := field(6)
		nameSize, err2 := field(11)
		if err1 != nil || err2 != nil || nameSize <= 0 || nameSize > 4096 || fileSize < 0 || fileSize > maxCpioFile {
			return nil, errors.New("initramfs: bad cpio header")
		}
		// The name and the data are each padded to 4 bytes (the name
		// counting the 110-byte header).
		nameBuf := make([]byte, (110+nameSize+3)&^3-110)
		if _, err := io.ReadFull(br, nameBuf); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		n := strings.TrimPrefix(string(bytes.TrimRight(nameBuf[:nameSize], "\x00")), "./")
		data := make([]byte, (fileSize+3)&^3)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		if n == name {
			return data[:fileSize], nil
		}
	}
}
