#!/usr/bin/env bash
# setup-podman.sh — install podman (Debian's podman 4.3, with conmon) if
# missing, write a private containers.conf and storage.conf that register
# runvirt as the runtime "runvirt", and load a locally built busybox image.
# Idempotent: run it as often as you like; it only does what is missing.
#
# podman has no daemon: every podman command reads its configuration. This
# one is a separate instance (its own containers.conf, storage.conf, storage
# root, run root, libpod state and tmp dir), so it neither needs nor
# disturbs a system podman. Point podman at it with:
#
#     export CONTAINERS_CONF=/run/runvirt-podman/containers.conf
#     export CONTAINERS_STORAGE_CONF=/run/runvirt-podman/storage.conf
#     podman run --runtime runvirt --rm --network none localhost/runvirt-busybox echo hello
#
# Environment (all optional):
#   RUNVIRT_BIN             runvirt binary (default: <repo>/bin/runvirt)
#   RUNVIRT_CONFIG          runvirt config the runtime reads (default: one
#                           written here that boots <repo>/build/guest/)
#   RUNVIRT_TEST_MACHINE    machine type in that config (default: runvirt's)
#   RUNVIRT_PODMAN_STATE    containers.conf, storage.conf, run root and
#                           libpod's tmp dir (default: /run/runvirt-podman)
#   RUNVIRT_PODMAN_ROOT     storage root, with libpod's database
#                           (/var/lib/runvirt-podman)
#   RUNVIRT_PODMAN_IMAGE    image name (localhost/runvirt-busybox:latest)
#
# podman starts conmon, and through it the runtime, with a scrubbed
# environment (LANG, LC_*, HOME, XDG_RUNTIME_DIR and little else), so neither
# podman's environment nor containers.conf's [engine] env reaches runvirt,
# and podman 4.3 has no containers.conf key for runtime flags. The runtime
# registered here is therefore a wrapper, <state>/runvirt, that runs
# `runvirt --root <state>/runtime --config <config>`: runvirt's state stays
# under this instance too.
#
# Prints the containers.conf's path as its last line (storage.conf is beside it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${RUNVIRT_PODMAN_STATE:-/run/runvirt-podman}
proot=${RUNVIRT_PODMAN_ROOT:-/var/lib/runvirt-podman}
conf=$state/containers.conf
sconf=$state/storage.conf
runvirt=${RUNVIRT_BIN:-$repo/bin/runvirt}
image=${RUNVIRT_PODMAN_IMAGE:-localhost/runvirt-busybox:latest}

say() { echo "setup-podman: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$runvirt" ] || die "$runvirt is missing (run: make)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

# 1. podman and conmon (Debian's podman recommends crun/runc; neither is
# needed here).
if ! command -v podman >/dev/null || ! command -v conmon >/dev/null; then
	say "installing podman and conmon"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman conmon >&2
fi

mkdir -p "$state" "$proot"

# 2. runvirt's own config: which kernel and initrd the VMs boot.
if [ -z "${RUNVIRT_CONFIG:-}" ]; then
	RUNVIRT_CONFIG=$state/runvirt.toml
	kernel=$repo/build/guest/vmlinuz
	[ -f "$repo/build/guest/vmlinux" ] && kernel=$repo/build/guest/vmlinux
	[ -f "$repo/build/guest/initrd.img" ] || die "$repo/build/guest/initrd.img is missing (run: make)"
	# podman shows the runtime's stderr of create in the container's
	# stderr: choose the accelerator explicitly, so that runvirt has no
	# "falling back to TCG" warning to print where there is no KVM.
	accel=tcg
	"$runvirt" --config /dev/null check 2>/dev/null | grep -q '^ok  *kvm' && accel=auto
	cat >"$RUNVIRT_CONFIG.tmp" <<EOF
kernel = "$kernel"
initrd = "$repo/build/guest/initrd.img"
accel = "$accel"
boot_timeout = "90s"
${RUNVIRT_TEST_MACHINE:+machine = \"$RUNVIRT_TEST_MACHINE\"}
EOF
	mv "$RUNVIRT_CONFIG.tmp" "$RUNVIRT_CONFIG"
fi

# 3. The runtime podman runs: runvirt with this instance's root and config
# (see above: the environment does not reach it).
cat >"$state/runvirt.new" <<EOF
#!/bin/sh
exec "$runvirt" --root "$state/runtime" --config "$RUNVIRT_CONFIG" "\$@"
EOF
chmod 755 "$state/runvirt.new"

# 4. containers.conf (what /etc/containers/containers.conf holds for the
# system podman): the runtime "runvirt" (the wrapper), cgroupfs and a file
# event log (there may be no systemd, and no journald, here), and libpod's
# state under this instance. No static_dir: the exit command conmon runs
# when a container stops (`podman --root ... container cleanup`) finds
# libpod's database in <root>/libpod, the default; another static_dir
# leaves it looking in the wrong place, the container "stopped" instead of
# "exited", and `podman run`/`wait` waiting out a 20 s timeout.
cat >"$conf.new" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$state/events.log"
tmp_dir = "$state/libpod"
volume_path = "$proot/volumes"

[engine.runtimes]
runvirt = ["$state/runvirt"]
EOF
# storage.conf: the storage root and run root.
cat >"$sconf.new" <<EOF
[storage]
driver = "overlay"
graphroot = "$proot/storage"
runroot = "$state/storage"
EOF
for f in "$state/runvirt" "$conf" "$sconf"; do
	if cmp -s "$f.new" "$f"; then
		rm "$f.new"
	else
		mv "$f.new" "$f"
	fi
done
export CONTAINERS_CONF=$conf CONTAINERS_STORAGE_CONF=$sconf
podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null 2>&1 ||
	die "podman info fails with $conf: $(podman info 2>&1 | tail -n 3)"

# 5. A busybox image, built here (no registry needed) as a docker-archive.
if ! podman image exists "$image"; then
	say "building and loading $image"
	work=$(mktemp -d /tmp/runvirt-pimage.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	"$(dirname "$0")/busybox-archive.sh" "$image" "$work/busybox.tar"
	podman load -i "$work/busybox.tar" >&2
	podman image exists "$image" || die "podman load did not create $image"
fi

echo "$conf"
