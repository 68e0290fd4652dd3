package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A container's OOM kill happens in the guest, where no host cgroup sees it.
// But the clients learn of OOM kills only from the host: containerd's runc
// shim (docker, ctr, containerd's CRI) and conmon (podman, CRI-O) watch the
// memory cgroup of the pid the runtime gave them (the stand-in) — v1's
// memory.oom_control eventfd, v2's memory.events — and report TaskOOM or
// write their oom file, from which docker sets OOMKilled and CRI the reason
// "OOMKilled". So when the agent says that the container's cgroup saw an OOM
// kill, the stand-in makes one happen in its own host cgroup before it exits
// (the clients need the OOM before the exit): it lowers the cgroup's limit
// to just above what it uses, starts a child that locks memory until the
// kernel kills it (oom_score_adj 1000 makes it the victim), and puts the
// limit back. The cost is a few MiB for a few milliseconds, once per OOM
// kill, in the cgroup of the container that had it.
//
// The victim must be the hog. The kernel kills the member with the largest
// RSS + swap + page tables, plus oom_score_adj/1000 of the cgroup's limit;
// QEMU sits in a sandbox's cgroup with ~100-250 MiB of RSS, so a limit just
// above the cgroup's usage would make QEMU the victim and lose what the guest
// had not synced. The headroom is therefore at least the largest member's
// footprint: the hog outweighs it by its own size. Briefly, the sandbox's
// host memory then grows by that much.

// oomMinHeadroom is the least the limit is set above the cgroup's usage.
const oomMinHeadroom = 8 << 20

// OOMHogCommand is the hidden command that runs OOMHog.
const OOMHogCommand = "oom-hog"

// memoryCgroup is the host memory cgroup of this process: its directory and
// whether it is cgroup v2. dir is "" at the hierarchy's root, where no
// client watches, or without a memory hierarchy.
func memoryCgroup() (dir string, v2 bool, err error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	unified := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" && parts[2] != "/" {
				return filepath.Join(cgroupRoot, "memory", parts[2]), false, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	if unified != "" && unified != "/" {
		if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
			return filepath.Join(cgroupRoot, unified), true, nil
		}
	}
	return "", false, nil
}

// ReflectOOM makes the kernel report an OOM kill in this process's host
// memory cgroup (see above). It does nothing where the process has no
// memory cgroup of its own.
func ReflectOOM(log *slog.Logger) error {
	dir, v2, err := memoryCgroup()
	if err != nil {
		return fmt.Errorf("reflect oom: %w", err)
	}
	if dir == "" {
		log.Debug("no memory cgroup of its own: the oom kill is not reflected on the host")
		return nil
	}
	// The hog is our child, born in our cgroup.
	return reflectOOMIn(dir, v2, nil, log)
}

// oomHogArgv starts the hog; a variable so that tests can run their own
// binary.
var oomHogArgv = []string{"/proc/self/exe", OOMHogCommand}

// reflectOOMIn makes an OOM kill happen in the memory cgroup dir. place, if
// not nil, moves the hog (stopped before its first allocation) into dir.
func reflectOOMIn(dir string, v2 bool, place func(pid int) error, log *slog.Logger) error {
	limitFile, usageFile := "memory.limit_in_bytes", "memory.usage_in_bytes"
	if v2 {
		limitFile, usageFile = "memory.max", "memory.current"
	}
	limitPath := filepath.Join(dir, limitFile)
	old, err := os.ReadFile(limitPath)
	if err != nil {
		return fmt.Errorf("reflect oom: %w", err)
	}
	ub, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return fmt.Errorf("reflect oom: %w", err)
	}
	usage, err := strconv.ParseUint(strings.TrimSpace(string(ub)), 10, 64)
	if err != nil {
		return fmt.Errorf("reflect oom: %s: %w", usageFile, err)
	}
	page := uint64(os.Getpagesize())
	headroom := oomMinHeadroom + largestMember(dir)
	limit := (usage + headroom + page - 1) / page * page
	if err := os.WriteFile(limitPath, []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		return fmt.Errorf("reflect oom: lower %s: %w", limitPath, err)
	}
	defer func() {
		if err := os.WriteFile(limitPath, []byte(strings.TrimSpace(string(old))), 0); err != nil {
			log.Error("restore the memory limit after reflecting an oom kill", "file", limitPath, "err", err)
		}
	}()
	// Should no OOM come (usage fell meanwhile, the cgroup's OOM killer is
	// disabled), the hog stops at twice the headroom.
	hog := exec.Command(oomHogArgv[0], append(oomHogArgv[1:], strconv.FormatUint(2*headroom>>20, 10))...)
	hog.Env = []string{}
	// The hog allocates only once it reads a byte: after it is in place.
	goAhead, err := hog.StdinPipe()
	if err != nil {
		return fmt.Errorf("reflect oom: %w", err)
	}
	if err := hog.Start(); err != nil {
		return fmt.Errorf("reflect oom: start the hog: %w", err)
	}
	if place != nil {
		if err := place(hog.Process.Pid); err != nil {
			hog.Process.Kill()
			hog.Wait()
			return fmt.Errorf("reflect oom: %w", err)
		}
	}
	goAhead.Write([]byte{1})
	done := make(chan error, 1)
	go func() { done <- hog.Wait() }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		hog.Process.Kill()
		<-done
		return errors.New("reflect oom: no oom kill within 5s")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			log.Debug("reflected the guest's oom kill in the host cgroup", "cgroup", dir)
			return nil
		}
	}
	return fmt.Errorf("reflect oom: the hog was not oom-killed: %v", err)
}

// largestMember is the largest footprint the OOM killer would weigh (RSS,
// swap and page tables) of the processes in the cgroup dir, in bytes.
func largestMember(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return 0
	}
	var most uint64
	for _, p := range strings.Fields(string(b)) {
		st, err := os.ReadFile(filepath.Join("/proc", p, "status"))
		if err != nil {
			continue
		}
		var kib uint64
		for _, l := range strings.Split(string(st), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmSwap:" || f[0] == "VmPTE:") {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				kib += n
			}
		}
		most = max(most, kib<<10)
	}
	return most
}

// OOMHog is the body of the hidden hog command: it volunteers as the OOM
// killer's victim and takes locked memory (never swapped out) until it is
// killed, or gives up after maxMiB.
func OOMHog(maxMiB uint64) error {
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("oom hog: %w", err)
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("oom hog: %w", err)
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		return fmt.Errorf("oom hog: mlockall: %w", err)
	}
	const chunk = 1 << 20
	for taken := uint64(0); taken < maxMiB<<20; taken += chunk {
		b, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("oom hog: %w", err)
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
	}
	return fmt.Errorf("oom hog: took %d MiB without an oom kill", maxMiB)
}
