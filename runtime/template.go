package runtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runvirt/runvirt/agent"
	"github.com/runvirt/runvirt/hypervisor"
	"github.com/runvirt/runvirt/internal/nsexec"
)

// Templates (config `template`, docs/design-templates.md): instead of
// booting, a sandbox's QEMU restores a VM that was booted once and saved.
// The template VM boots with runvirt.template=1: its agent does its whole
// boot but for mounting the share, says a template hello and waits. The
// monitor that makes it stops it and saves it with QEMU's x-ignore-shared
// capability: the guest RAM is a file (mapped shared by the template), left
// out of the saved state, so the state is only the devices'. A copy maps
// the RAM file privately (its writes are its own; what it only reads stays
// the template's pages, shared by every copy), loads the device state,
// and gets a Wake (the host's clock and fresh randomness) before its agent
// mounts its share and says hello.
//
// Each configuration that shapes the VM has its own template, made by the
// first sandbox that needs it: under TemplateDir/KEY, KEY a hash of
// the QEMU binary, kernel and initrd (path, size, mtime) and the VM's
// options and kernel command line.

// templateRetryAfter is how long a configuration whose template could not
// be made boots without trying again.
const templateRetryAfter = 10 * time.Minute

// savedTemplate is one saved template VM.
type savedTemplate struct {
	dir   string
	ram   string // the guest RAM
	state string // the device state (QEMU's migration stream)
}

func templateAt(dir string) *savedTemplate {
	return &savedTemplate{dir: dir, ram: filepath.Join(dir, "ram"), state: filepath.Join(dir, "state")}
}

// remove deletes a template that failed to restore: the next sandbox makes
// a new one.
func (t *savedTemplate) remove() { os.RemoveAll(t.dir) }

// templateUnfit says why a sandbox cannot start from a template ("" if it
// can).
func templateUnfit(cfg SandboxConfig) string {
	switch {
	case cfg.TemplateDir == "":
		return "templates are off"
	case cfg.SharedFS != "9p" || cfg.Transport != "serial":
		return "templates need 9p and the serial transport"
	}
	return ""
}

// nicCount is how many NICs a sandbox's VM has.
func nicCount(network *SandboxNetwork) int {
	if network == nil {
		return 0
	}
	return len(network.Interfaces)
}

// templateMAC is the MAC of a template's NIC i. A copy's NICs start with
// these (a NIC's MAC is saved with the VM); the Wake gives them the
// sandbox's own.
func templateMAC(i int) string {
	return fmt.Sprintf("02:72:76:74:%02x:%02x", i>>8&0xff, i&0xff)
}

// wakeMACs maps the template's NIC MACs to the sandbox's.
func wakeMACs(network *SandboxNetwork) []agent.MACChange {
	var m []agent.MACChange
	for i := 0; i < nicCount(network); i++ {
		m = append(m, agent.MACChange{From: templateMAC(i), To: network.Interfaces[i].Guest.MAC})
	}
	return m
}

// templateFor returns the template a sandbox starts from, making it if
// needed, or nil: the sandbox boots (and the log says why).
func templateFor(cfg SandboxConfig, base *hypervisor.VM, network *SandboxNetwork, log *slog.Logger) *savedTemplate {
	if cfg.TemplateDir == "" {
		return nil
	}
	if why := templateUnfit(cfg); why != "" {
		log.Info("booting, not starting from a template", "why", why)
		return nil
	}
	t, err := ensureTemplate(cfg, base, nicCount(network), log)
	if err != nil {
		log.Warn("no template; booting", "err", err)
		return nil
	}
	return t
}

// templateKey names the template of a configuration (base: its VM, see
// baseVM): whatever makes two VMs' saved states interchangeable.
func templateKey(cfg SandboxConfig, base *hypervisor.VM, nics int) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "agent protocol %d\nnics %d\n", agent.ProtocolVersion, nics)
	for _, p := range []string{cfg.QEMU, cfg.Kernel, cfg.Initrd} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	}
	vm := *base
	vm.Template = true
	fmt.Fprintf(h, "%s %s %d %d %s %s\n%s\n", vm.Machine, vm.Accel, vm.VCPUs, vm.MemoryMiB, vm.Transport, vm.SharedFS, vm.Cmdline())
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ensureTemplate returns the configuration's template, making it first if
// there is none. Monitors that need the same missing template take turns
// on a lock: one makes it, the others then use it.
func ensureTemplate(cfg SandboxConfig, base *hypervisor.VM, nics int, log *slog.Logger) (*savedTemplate, error) {
	key, err := templateKey(cfg, base, nics)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t := templateAt(filepath.Join(cfg.TemplateDir, key))
	if _, err := os.Stat(t.state); err == nil {
		return t, nil
	}
	// A template that could not be made is not tried again by every
	// sandbox (each would pay a boot for nothing): only once the marker
	// is templateRetryAfter old, or gone.
	failed := t.dir + ".failed"
	if fi, err := os.Stat(failed); err == nil && time.Since(fi.ModTime()) < templateRetryAfter {
		b, _ := os.ReadFile(failed)
		return nil, fmt.Errorf("making this template failed %s ago (%s); it is tried again %s after, or when %s is removed",
			time.Since(fi.ModTime()).Round(time.Second), strings.TrimSpace(string(b)), templateRetryAfter, failed)
	}
	if err := os.MkdirAll(cfg.TemplateDir, 0o700); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	lock, err := os.OpenFile(t.dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("template: lock: %w", err)
	}
	if _, err := os.Stat(t.state); err == nil {
		return t, nil // made while we waited
	}
	start := time.Now()
	os.Remove(failed)
	if err := makeTemplate(cfg, base, key, nics, t, log); err != nil {
		os.RemoveAll(t.dir)
		os.WriteFile(failed, []byte(err.Error()+"\n"), 0o600)
		return nil, fmt.Errorf("make template: %w", err)
	}
	log.Info("template made", "template", t.dir, "took", time.Since(start).Round(time.Millisecond))
	return t, nil
}

// makeTemplate boots the template VM (a copy of base, with nics NICs) and
// saves it into t.
func makeTemplate(cfg SandboxConfig, base *hypervisor.VM, key string, nics int, t *savedTemplate, log *slog.Logger) (err error) {
	os.RemoveAll(t.dir)
	share := filepath.Join(t.dir, "share")
	if err := os.MkdirAll(share, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(share)
	// Socket paths are short under SocketBase; the template dir may not be.
	sockDir := filepath.Join(SocketBase, "template-"+key)
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)

	v := *base
	vm := &v
	vm.ID, vm.ShareDir, vm.ConsoleLog = "template-"+key, share, filepath.Join(t.dir, "console.log")
	vm.Template, vm.RAMFile, vm.RAMShared = true, t.ram+".tmp", true
	console, consoleDone, err := startConsoleLog(vm.ConsoleLog, consoleLogMax(cfg.ConsoleLogKiB), log)
	if err != nil {
		return err
	}
	// Runs last, once QEMU is gone and our write end closed.
	defer func() {
		select {
		case <-consoleDone:
		case <-time.After(2 * time.Second):
		}
	}()
	defer console.Close()
	vm.Console = console
	qmpPath := filepath.Join(sockDir, "qmp.sock")
	if vm.QMP, err = listenFile(qmpPath); err != nil {
		return err
	}
	defer vm.QMP.Close()
	ours, theirs, err := agentSocketPair()
	if err != nil {
		return err
	}
	defer ours.Close()
	defer theirs.Close()
	vm.AgentConn = theirs
	taps, err := templateTaps(nics)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range taps {
			f.Close()
		}
	}()
	for i, f := range taps {
		vm.Nets = append(vm.Nets, hypervisor.NetIface{Tap: f, MAC: templateMAC(i)})
	}

	cmd, err := vm.Command()
	if err != nil {
		return err
	}
	qemuErr := &tailWriter{max: 1024}
	cmd.Stdout, cmd.Stderr = qemuErr, qemuErr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	defer func() {
		if !isClosed(done) {
			cmd.Process.Kill()
			<-done
		}
		if err != nil && isClosed(done) && cmd.ProcessState != nil && !cmd.ProcessState.Success() {
			err = fmt.Errorf("%w (qemu: %s)", err, qemuErr.lastLine())
		}
	}()
	theirs.Close()

	// The agent boots and says its template hello.
	var hello agent.Hello
	if err := readHello(ours, time.Now().Add(cfg.BootTimeout), done, &hello); err != nil {
		return fmt.Errorf("template vm: no hello from the agent (console: %s): %w", vm.ConsoleLog, err)
	}
	if !hello.Template {
		return fmt.Errorf("template vm: the agent did not boot as a template (an older guest image?)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.BootTimeout)
	defer cancel()
	q, err := hypervisor.DialQMP(ctx, qmpPath)
	if err != nil {
		return err
	}
	defer q.Close()
	// QEMU 7.2 takes an outgoing fd: only as an fd passed over QMP, and may
	// not spawn an exec: helper (-sandbox): it sends to a socket of ours.
	migPath := filepath.Join(sockDir, "migrate.sock")
	ln, err := net.Listen("unix", migPath)
	if err != nil {
		return err
	}
	defer ln.Close()
	out, err := os.OpenFile(t.state+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	copied := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			copied <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(out, c)
		copied <- err
	}()
	if err := q.SaveStopped(ctx, "unix:"+migPath, true); err != nil {
		return fmt.Errorf("saving the template vm: %w", err)
	}
	select {
	case err := <-copied:
		if err != nil {
			return fmt.Errorf("saving the template vm: %w", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("saving the template vm: %w", ctx.Err())
	}
	q.Quit(ctx)
	select {
	case <-done:
	case <-ctx.Done():
	}
	if err := out.Sync(); err != nil {
		return err
	}
	// The state last: its name is what says the template is complete.
	if err := os.Rename(t.ram+".tmp", t.ram); err != nil {
		return err
	}
	return os.Rename(t.state+".tmp", t.state)
}

// restoreTemplate has a QEMU started with -incoming defer load the template's
// state and run.
func restoreTemplate(qmpPath, uri string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	q, err := hypervisor.DialQMP(ctx, qmpPath)
	if err != nil {
		return fmt.Errorf("restore template: %w", err)
	}
	defer q.Close()
	// The template was saved stopped with its RAM left in its file.
	if err := q.RestoreAndRun(ctx, uri, true); err != nil {
		return fmt.Errorf("restore template: %w", err)
	}
	return nil
}

// wake sends a restored agent what makes its copy its own.
func wake(conn io.Writer, macs []agent.MACChange) error {
	w := agent.Wake{UnixNano: time.Now().UnixNano(), Seed: make([]byte, agent.WakeSeedBytes), MACs: macs}
	if _, err := rand.Read(w.Seed); err != nil {
		return err
	}
	if err := agent.WriteFrame(conn, w); err != nil {
		return fmt.Errorf("wake the restored agent: %w", err)
	}
	return nil
}

// templateTaps opens n taps for a template VM's NICs: nameless (the kernel
// names them), not persistent (they go with their files), in a network
// namespace of their own that nothing else uses. The template's guest never
// configures its NICs; the taps only back the devices being saved.
func templateTaps(n int) ([]*os.File, error) {
	if n == 0 {
		return nil, nil
	}
	var files []*os.File
	// The thread moves to a new namespace: it must never run other
	// goroutines again.
	err := nsexec.Throwaway(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("template taps: new network namespace: %w", err)
		}
		for i := 0; i < n; i++ {
			f, err := openTap("")
			if err != nil {
				for _, f := range files {
					f.Close()
				}
				files = nil
				return fmt.Errorf("template taps: %w", err)
			}
			files = append(files, f)
		}
		return nil
	})
	return files, err
}
