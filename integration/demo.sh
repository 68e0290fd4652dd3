#!/usr/bin/env bash
# demo.sh — run a busybox container inside a runvirt micro-VM and show that
# it runs on the guest's kernel, not the host's. Uses the binaries and guest
# image that `make` built (bin/, build/guest/); needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo make demo)" >&2; exit 1; }
[ -x bin/runvirt ] && [ -f build/guest/initrd.img ] || { echo "demo.sh: run make first" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "demo.sh: busybox-static is missing (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/runvirt-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"
integration/busybox-rootfs.sh "$work/bundle/rootfs"

kernel=build/guest/vmlinuz
[ -f build/guest/vmlinux ] && kernel=build/guest/vmlinux
cat >"$work/config.toml" <<TOML
kernel = "$PWD/$kernel"
initrd = "$PWD/build/guest/initrd.img"
TOML

cat >"$work/bundle/config.json" <<'JSON'
{
  "ociVersion": "1.0.2",
  "root": {"path": "rootfs"},
  "hostname": "runvirt-demo",
  "process": {
    "cwd": "/",
    "env": ["PATH=/bin"],
    "args": ["sh", "-c", "echo \"guest kernel: $(uname -r)   hostname: $(hostname)\""]
  },
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}
}
JSON

echo "host kernel:  $(uname -r)"
# demo_run CONFIG NAME: run the container, print its line and the time taken.
demo_run() {
	local start end
	start=$(date +%s.%N)
	bin/runvirt --root "$work/root" --config "$1" run --bundle "$work/bundle" "$2"
	end=$(date +%s.%N)
	took=$(awk "BEGIN{printf \"%.2f\", $end - $start}")
	printf 'runvirt run took %s s (%s)\n' "$took" "$(bin/runvirt --config "$1" check | sed -n 's/^will use: *//p' | head -1)"
}
demo_run "$work/config.toml" demo
minimal_took=$took

# The guest image has the minimal kernel (the default): show what it saves
# against the distro kernel, in a guest image of its own made here.
release=$(ls -1 /lib/modules 2>/dev/null | sort -V | tail -n 1)
if grep -q -- '-runvirt$' build/guest/kernel.release 2>/dev/null && [ -n "$release" ]; then
	# QEMU runs unprivileged: it must be able to read the image.
	chmod 755 "$work"
	guest-image/build.sh --agent bin/runvirt-agent --out "$work/distro" --kernel-release "$release" >/dev/null 2>&1
	dkernel="$work/distro/vmlinuz"
	[ -f "$work/distro/vmlinux" ] && dkernel="$work/distro/vmlinux"
	cat >"$work/distro.toml" <<TOML
kernel = "$dkernel"
initrd = "$work/distro/initrd.img"
TOML
	echo "the same with the distro kernel (make GUEST_KERNEL=distro):"
	demo_run "$work/distro.toml" demo-distro
	awk "BEGIN{printf \"the minimal kernel starts the container %.1fx as fast\\n\", $took / $minimal_took}"
fi
