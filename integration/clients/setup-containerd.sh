#!/usr/bin/env bash
# setup-containerd.sh — install containerd (Debian's package: containerd,
# ctr, containerd-shim-runc-v2), start a containerd instance for runvirt in
# the background, and import a locally built busybox image into it.
# Idempotent: run it as often as you like; it only does what is missing.
#
# With RUNVIRT_CLIENTS=current it runs today's containerd 2 instead, as
# build-clients.sh built it (config version 3), as a second instance with
# paths of its own (/run/runvirt-containerd2, /var/lib/runvirt-containerd2),
# so both can be set up on one host.
#
# The instance is a separate containerd (its own socket, root, state and
# config), so it neither needs nor disturbs a system containerd or one that
# dockerd runs. Point ctr at it with:
#
#     export CONTAINERD_ADDRESS=/run/runvirt-containerd/containerd.sock
#
# Environment (all optional):
#   RUNVIRT_BIN                 runvirt binary (default: <repo>/bin/runvirt)
#   RUNVIRT_CONFIG              runvirt config the runtime reads (default: one
#                               written here that boots <repo>/build/guest/)
#   RUNVIRT_TEST_MACHINE        machine type in that config (default: runvirt's)
#   RUNVIRT_CONTAINERD_STATE    state dir, socket and log (/run/runvirt-containerd)
#   RUNVIRT_CONTAINERD_ROOT     containerd's root (/var/lib/runvirt-containerd)
#   RUNVIRT_IMAGE               image name (localhost/busybox:runvirt)
#   RUNVIRT_CLIENTS             "debian" (default) or "current"
#
# The CRI plugin is set up for Kubernetes pods too: a RuntimeClass handler
# "runvirt", the pause image localhost/pause:runvirt (built here), and a CNI
# bridge network "runvirt-pods" (10.99.0.0/24 on the host bridge rv-cni0;
# 10.98.0.0/24 on rv-cni1 for the current set; Debian's
# containernetworking-plugins).
#
# Prints the socket's path as its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
say() { echo "setup-containerd: $*" >&2; }
die() { say "$*"; exit 1; }

case ${RUNVIRT_CLIENTS:-debian} in
debian)
	suffix= subnet=10.99.0.0/24 bridge=rv-cni0
	;;
current)
	suffix=2 subnet=10.98.0.0/24 bridge=rv-cni1
	bindir=$("$(dirname "$0")/build-clients.sh" --bindir containerd) || exit 1
	# containerd finds its shim in PATH, and the script's ctr is this
	# containerd's.
	export PATH=$bindir:$PATH
	;;
*) die "RUNVIRT_CLIENTS=$RUNVIRT_CLIENTS: want debian or current" ;;
esac
state=${RUNVIRT_CONTAINERD_STATE:-/run/runvirt-containerd$suffix}
croot=${RUNVIRT_CONTAINERD_ROOT:-/var/lib/runvirt-containerd$suffix}
sock=$state/containerd.sock
conf=$state/config.toml
log=$state/containerd.log
runvirt=${RUNVIRT_BIN:-$repo/bin/runvirt}
image=${RUNVIRT_IMAGE:-localhost/busybox:runvirt}
pause_image=localhost/pause:runvirt
cni_conf=$state/cni
cni_bin=/usr/lib/cni

[ "$(id -u)" = 0 ] || die "run as root"

# --stop: stop the containerd this script started.
if [ "${1:-}" = --stop ]; then
	pid=$(cat "$state/containerd.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		say "stopping containerd $pid"
		kill "$pid"
		for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$pid" 2>/dev/null && die "containerd $pid did not stop"
	fi
	rm -f "$state/containerd.pid"
	exit 0
fi
[ -x "$runvirt" ] || die "$runvirt is missing (run: make)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

# 1. containerd, ctr, the runc shim and the CNI plugins.
if [ -n "$suffix" ]; then
	if [ ! -x "$cni_bin/bridge" ]; then
		say "installing the CNI plugins"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containernetworking-plugins >&2
	fi
elif ! command -v containerd >/dev/null || ! command -v ctr >/dev/null ||
	! command -v containerd-shim-runc-v2 >/dev/null || [ ! -x "$cni_bin/bridge" ]; then
	say "installing containerd and the CNI plugins"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd containernetworking-plugins >&2
fi

mkdir -p "$state" "$croot" "$cni_conf"

# The pods' network: a bridge with NAT, addresses from host-local IPAM.
# The firewall plugin accepts the pods' forwarded traffic, as real CNI
# setups do: on a host where dockerd ran (FORWARD policy DROP, bridged
# traffic through iptables) pods on the bridge could not reach each other.
cat >"$cni_conf/10-runvirt-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "runvirt-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$subnet"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$state/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF

# 2. runvirt's own config: which kernel and initrd the VMs boot.
if [ -z "${RUNVIRT_CONFIG:-}" ]; then
	RUNVIRT_CONFIG=$state/runvirt.toml
	kernel=$repo/build/guest/vmlinuz
	[ -f "$repo/build/guest/vmlinux" ] && kernel=$repo/build/guest/vmlinux
	[ -f "$repo/build/guest/initrd.img" ] || die "$repo/build/guest/initrd.img is missing (run: make)"
	cat >"$RUNVIRT_CONFIG.tmp" <<EOF
kernel = "$kernel"
initrd = "$repo/build/guest/initrd.img"
boot_timeout = "90s"
${RUNVIRT_TEST_MACHINE:+machine = \"$RUNVIRT_TEST_MACHINE\"}
EOF
	mv "$RUNVIRT_CONFIG.tmp" "$RUNVIRT_CONFIG"
fi

# 3. containerd's config: a runc-shim runtime "runvirt" whose BinaryName is
# runvirt (used by the CRI plugin: RuntimeClass handler "runvirt").
if [ -n "$suffix" ]; then
	# containerd 2: config version 3 (2.4 reads it, as it reads 2, by
	# migrating it to its version 4). The CRI plugin is split in two:
	# images (the pause image) and runtime (runtimes, CNI). The v1 runtime
	# is gone, so ctr picks runvirt with --runc-binary only.
	cat >"$conf.new" <<EOF
version = 3
root = "$croot"
state = "$state"

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "info"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "$pause_image"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$cni_conf"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runvirt]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runvirt.options]
      BinaryName = "$runvirt"
EOF
else
	cat >"$conf.new" <<EOF
version = 2
root = "$croot"
state = "$state"

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "$pause_image"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runvirt]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runvirt.options]
      BinaryName = "$runvirt"

# ctr cannot pick a CRI runtime entry; this (deprecated) v1 runtime makes
# "ctr run --runtime io.containerd.runtime.v1.linux" use runvirt.
[plugins."io.containerd.runtime.v1.linux"]
  runtime = "$runvirt"
EOF
fi
restart=
if cmp -s "$conf.new" "$conf"; then
	rm "$conf.new"
else
	mv "$conf.new" "$conf"
	restart=1
fi

# 4. Start containerd unless it already answers on the socket.
pid=$(cat "$state/containerd.pid" 2>/dev/null || true)
if [ -n "$restart" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
	say "config changed: restarting containerd $pid"
	kill "$pid"
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
fi
if ctr --address "$sock" version >/dev/null 2>&1; then
	say "containerd already running on $sock"
else
	say "starting containerd (log: $log)"
	# The shims inherit containerd's environment, and runvirt reads
	# RUNVIRT_CONFIG from it.
	RUNVIRT_CONFIG=$RUNVIRT_CONFIG setsid containerd --config "$conf" >>"$log" 2>&1 </dev/null &
	echo $! >"$state/containerd.pid"
	for _ in $(seq 1 150); do
		ctr --address "$sock" version >/dev/null 2>&1 && break
		kill -0 "$(cat "$state/containerd.pid")" 2>/dev/null || die "containerd exited; see $log"
		sleep 0.2
	done
	ctr --address "$sock" version >/dev/null 2>&1 || die "containerd did not come up on $sock; see $log"
fi

# 5. Images, built here (no registry needed) as OCI image layouts: busybox
# in the default namespace (ctr) and in k8s.io (the CRI plugin's), and the
# pods' pause image in k8s.io.
work=$(mktemp -d /tmp/runvirt-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# has_image NAMESPACE NAME (grep reads all: with -q, ctr could die of
# SIGPIPE, and pipefail would call that a failure)
has_image() { ctr --address "$sock" -n "$1" images ls -q | grep -x "$2" >/dev/null; }

# import_image NAMESPACE NAME ROOTFS CMD-JSON
import_image() {
	local ns=$1 name=$2 rootfs=$3 cmd=$4 dir
	has_image "$ns" "$name" && return 0
	say "importing $name into namespace $ns"
	dir=$(mktemp -d "$work/oci.XXXXXX")
	mkdir -p "$dir/oci/blobs/sha256"
	blob() { # blob FILE -> prints "sha256:HEX SIZE", moves FILE into blobs/
		local hex size
		hex=$(sha256sum "$1" | cut -d' ' -f1)
		size=$(stat -c %s "$1")
		mv "$1" "$dir/oci/blobs/sha256/$hex"
		echo "sha256:$hex $size"
	}
	tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$dir/layer.tar" .
	read -r layer layer_size < <(blob "$dir/layer.tar")
	cat >"$dir/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$cmd,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["$layer"]}}
EOF
	read -r config config_size < <(blob "$dir/config.json")
	cat >"$dir/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$layer","size":$layer_size}]}
EOF
	read -r manifest manifest_size < <(blob "$dir/manifest.json")
	cat >"$dir/oci/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$manifest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"${name##*:}"}}]}
EOF
	echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci/oci-layout"
	tar -C "$dir/oci" -cf "$dir/image.tar" .
	ctr --address "$sock" -n "$ns" images import "$dir/image.tar" >&2
	has_image "$ns" "$name" || die "import did not create $name in $ns"
}

busybox=$work/busybox
"$(dirname "$0")/../busybox-rootfs.sh" "$busybox"
import_image default "$image" "$busybox" '["sh"]'
import_image k8s.io "$image" "$busybox" '["sh"]'
pauseroot=$work/pause
mkdir -p "$pauseroot"
CGO_ENABLED=0 ${GO:-go} build -C "$repo" -trimpath -o "$pauseroot/pause" ./integration/clients/pause
import_image k8s.io "$pause_image" "$pauseroot" '["/pause"]'

echo "$sock"
