// Package hypervisor starts and stops the QEMU micro-VM of a sandbox and the
// helpers it needs (virtiofsd), and tells what the host offers (KVM, vsock).
package hypervisor

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// KVMStatus says whether hardware virtualisation really works here.
type KVMStatus struct {
	Usable bool
	Reason string // why not, or what was found
}

const (
	kvmGetAPIVersion = 0xAE00 // KVM_GET_API_VERSION
	kvmCreateVM      = 0xAE01 // KVM_CREATE_VM
	kvmAPIVersion    = 12
)

// DetectKVM decides from the CPU flags and a working /dev/kvm, never from the
// device node alone: a nested PVM hypervisor exposes /dev/kvm without VT-x or
// AMD-V, and a stock guest hangs there with -enable-kvm.
func DetectKVM() KVMStatus {
	return detectKVM("/proc/cpuinfo", "/dev/kvm")
}

func detectKVM(cpuinfo, dev string) KVMStatus {
	flag, err := cpuVirtFlag(cpuinfo)
	if err != nil {
		return KVMStatus{Reason: fmt.Sprintf("read cpu flags: %v", err)}
	}
	if flag == "" {
		return KVMStatus{Reason: "the CPU flags have neither vmx nor svm (no hardware virtualisation, or a nested hypervisor that hides it)"}
	}
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return KVMStatus{Reason: fmt.Sprintf("%s flag present but %s cannot be opened: %v (try: modprobe kvm_intel or kvm_amd)", flag, dev, err)}
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil || v != kvmAPIVersion {
		return KVMStatus{Reason: fmt.Sprintf("%s answers KVM_GET_API_VERSION with %d (%v), want %d", dev, v, err, kvmAPIVersion)}
	}
	vm, err := unix.IoctlRetInt(int(f.Fd()), kvmCreateVM)
	if err != nil {
		return KVMStatus{Reason: fmt.Sprintf("%s cannot create a VM: %v", dev, err)}
	}
	unix.Close(vm)
	return KVMStatus{Usable: true, Reason: fmt.Sprintf("%s flag and a working %s", flag, dev)}
}

// cpuVirtFlag returns "vmx", "svm" or "" from a cpuinfo file.
func cpuVirtFlag(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, fl := range strings.Fields(line) {
			if fl == "vmx" || fl == "svm" {
				return fl, nil
			}
		}
	}
	return "", sc.Err()
}

// ChooseAccel resolves the configured accel ("auto", "kvm", "tcg") to what
// QEMU gets. warn is non-empty when auto falls back to TCG; asking for kvm
// where it does not work is an error.
func ChooseAccel(want string, kvm KVMStatus) (accel, warn string, err error) {
	switch want {
	case "tcg":
		return "tcg", "", nil
	case "kvm":
		if !kvm.Usable {
			return "", "", fmt.Errorf("accel kvm: KVM is not usable here: %s", kvm.Reason)
		}
		return "kvm", "", nil
	case "auto", "":
		if kvm.Usable {
			return "kvm", "", nil
		}
		return "tcg", "KVM is not usable (" + kvm.Reason + "); falling back to TCG software emulation, which is much slower", nil
	}
	return "", "", fmt.Errorf("accel: unknown value %q", want)
}
