// Command bench-init is the init of the "floor" guest that runvirt-bench
// boots: the same kernel and machine options as runvirt, but an initramfs
// whose only program is this. It prints the guest's CLOCK_BOOTTIME on the
// console and powers the VM off at once (QEMU, run with -no-reboot, exits),
// or, with BENCH_IDLE=1 on the kernel command line, prints BENCH-IDLE and
// sleeps for ever (the idle footprint floor).
//
// With BENCH_TEMPLATE=1 it prints BENCH-TEMPLATE and waits for a line on
// the console: the bench saves the VM while it waits and restores copies of
// it, and each copy, given its line, prints BENCH-RESUMED and powers off.
//
// Build it static: CGO_ENABLED=0 go build ./bench/cmd/bench-init
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	fmt.Printf("BENCH-INIT boottime_ms=%d\n", ts.Nano()/1e6)
	if os.Getenv("BENCH_TEMPLATE") != "" {
		fmt.Println("BENCH-TEMPLATE")
		line := make([]byte, 64)
		if _, err := os.Stdin.Read(line); err != nil {
			fmt.Println("read console:", err)
		}
		_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
		fmt.Printf("BENCH-RESUMED boottime_ms=%d\n", ts.Nano()/1e6)
		powerOff()
	}
	if os.Getenv("BENCH_IDLE") != "" {
		fmt.Println("BENCH-IDLE")
		for {
			time.Sleep(time.Hour)
		}
	}
	powerOff()
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("power off:", err)
	}
	// Without ACPI a power off is a halt; a reset makes QEMU (-no-reboot) exit.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	for {
		time.Sleep(time.Hour)
	}
}
