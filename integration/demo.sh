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
start=$(date +%s.%N)
bin/runvirt --root "$work/root" --config "$work/config.toml" run --bundle "$work/bundle" demo
end=$(date +%s.%N)
printf 'runvirt run took %.2f s (%s)\n' "$(awk "BEGIN{print $end - $start}")" "$(bin/runvirt --config "$work/config.toml" check | sed -n 's/^will use: *//p' | head -1)"
