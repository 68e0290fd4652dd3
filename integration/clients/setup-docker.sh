#!/usr/bin/env bash
# setup-docker.sh — run Debian's docker the way its package sets it up, with
# runvirt added as a runtime, and load a locally built busybox image.
# Idempotent: run it as often as you like; it only does what is missing.
#
#   setup-docker.sh          install, configure, start; prints the socket
#   setup-docker.sh --stop   stop the daemons this script started
#
# Nothing here is private to the tests: the system containerd with its
# default config, root and state (/etc/containerd/config.toml,
# /var/lib/containerd, /run/containerd), and dockerd as Debian's unit starts
# it (`dockerd --containerd=/run/containerd/containerd.sock`) with its
# default socket, data root and exec root (/var/run/docker.sock,
# /var/lib/docker, /var/run/docker: through the /var/run -> /run symlink, as
# users have it). runvirt is the runtime "runvirt" of /etc/docker/daemon.json,
# the file a user edits:
#
#     {"runtimes": {"runvirt": {"path": "/usr/local/bin/runvirt"}}}
#
# Here its runtimeArgs name the config that boots this checkout's guest
# image. A changed daemon.json reaches a running dockerd by SIGHUP, as
# `systemctl reload docker` sends it. An existing daemon.json that does not
# name runvirt is never overwritten.
#
# With RUNVIRT_CLIENTS=current it runs today's docker engine 29 instead, as
# build-clients.sh built it, on a containerd 2 of its own, both with paths
# of their own so that they run beside Debian's: the state, socket
# (docker.sock), pid file, daemon.json and exec root (exec/) under
# /run/runvirt-docker29, the data root /var/lib/runvirt-docker29, and the
# containerd under containerd/ of both. The client is the docker CLI the
# machine has.
#
# Environment (all optional):
#   RUNVIRT_BIN             runvirt binary (default: <repo>/bin/runvirt)
#   RUNVIRT_CONFIG          runvirt config the runtime reads (default: one
#                           written here that boots <repo>/build/guest/)
#   RUNVIRT_TEST_MACHINE    machine type in that config (default: runvirt's)
#   RUNVIRT_DOCKER_STATE    where this script keeps its logs, markers and
#                           runvirt config (default: /run/runvirt-docker)
#   RUNVIRT_DOCKER_BRIDGE   "none" adds "bridge": "none" to daemon.json
#   RUNVIRT_DOCKER_IMAGE    image name (runvirt-busybox:latest)
#   RUNVIRT_CLIENTS         "debian" (default) or "current"
#
# Prints the socket's path as its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
runvirt=${RUNVIRT_BIN:-$repo/bin/runvirt}
image=${RUNVIRT_DOCKER_IMAGE:-runvirt-busybox:latest}

say() { echo "setup-docker: $*" >&2; }
die() { say "$*"; exit 1; }

case ${RUNVIRT_CLIENTS:-debian} in
debian)
	current=
	state=${RUNVIRT_DOCKER_STATE:-/run/runvirt-docker}
	sock=/var/run/docker.sock
	pidfile=/var/run/docker.pid
	ctrd_sock=/run/containerd/containerd.sock
	conf=/etc/docker/daemon.json
	;;
current)
	current=1
	state=${RUNVIRT_DOCKER_STATE:-/run/runvirt-docker29}
	sock=$state/docker.sock
	pidfile=$state/docker.pid
	ctrd_sock=$state/containerd/containerd.sock
	conf=$state/daemon.json
	droot=/var/lib/runvirt-docker29
	ctrd_bin=$("$(dirname "$0")/build-clients.sh" --bindir containerd) || exit 1
	moby_bin=$("$(dirname "$0")/build-clients.sh" --bindir moby) || exit 1
	# containerd finds its shim in PATH; dockerd finds runc and
	# docker-init there. The CLI stays the machine's.
	export PATH=$ctrd_bin:$moby_bin:$PATH
	;;
*) die "RUNVIRT_CLIENTS=$RUNVIRT_CLIENTS: want debian or current" ;;
esac

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$state"

# stop PIDFILE MARKER NAME: stop the daemon whose pid is in PIDFILE if this
# script started it (MARKER holds that pid).
stop() {
	local pid
	pid=$(cat "$2" 2>/dev/null || true)
	[ -n "$pid" ] || return 0
	if [ "$(cat "$1" 2>/dev/null || true)" = "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		say "stopping $3 $pid"
		kill "$pid"
		for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$pid" 2>/dev/null && die "$3 $pid did not stop"
	fi
	rm -f "$2"
}
if [ "${1:-}" = --stop ]; then
	stop "$pidfile" "$state/started-dockerd" dockerd
	stop "$state/containerd.pid" "$state/started-containerd" containerd
	exit 0
fi
[ $# -eq 0 ] || die "unknown argument: $1 (want none or --stop)"
[ -x "$runvirt" ] || die "$runvirt is missing (run: make)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

# 1. dockerd and containerd (Debian's docker.io also brings runc and
# docker-init, which the current set takes from Debian too).
if [ -n "$current" ]; then
	if ! command -v runc >/dev/null || ! command -v docker-init >/dev/null || ! command -v docker >/dev/null; then
		say "installing runc, tini (docker-init) and docker.io (a docker CLI)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc tini docker.io >&2
	fi
elif ! command -v dockerd >/dev/null || ! command -v docker >/dev/null || ! command -v containerd >/dev/null; then
	say "installing docker.io"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io containerd >&2
fi

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

# 3. /etc/docker/daemon.json: the runtime "runvirt".
if [ -e "$conf" ] && ! grep -q '"runvirt"' "$conf"; then
	die "$conf exists and has no runtime \"runvirt\": add it by hand (see docs/docker.md) or move the file away"
fi
bridge_json=
[ "${RUNVIRT_DOCKER_BRIDGE:-}" = none ] && bridge_json=',
  "bridge": "none"'
mkdir -p "$(dirname "$conf")"
cat >"$conf.new" <<EOF
{
  "runtimes": {
    "runvirt": {
      "path": "$runvirt",
      "runtimeArgs": ["--config", "$RUNVIRT_CONFIG"]
    }
  }$bridge_json
}
EOF
changed=
if cmp -s "$conf.new" "$conf"; then
	rm "$conf.new"
else
	mv "$conf.new" "$conf"
	changed=1
fi

# 4. The system containerd, as containerd.service starts it; for the
# current set, a containerd 2 of dockerd's own.
ctrd_args=()
if [ -n "$current" ]; then
	mkdir -p "$state/containerd" "$droot/containerd"
	cat >"$state/containerd/config.toml" <<EOF
version = 3
root = "$droot/containerd"
state = "$state/containerd"

[grpc]
  address = "$ctrd_sock"

[ttrpc]
  address = "$ctrd_sock.ttrpc"
EOF
	ctrd_args=(--config "$state/containerd/config.toml")
fi
if ctr --address "$ctrd_sock" version >/dev/null 2>&1; then
	say "containerd already running on $ctrd_sock"
else
	say "starting containerd (log: $state/containerd.log)"
	setsid containerd "${ctrd_args[@]}" >>"$state/containerd.log" 2>&1 </dev/null &
	echo $! >"$state/containerd.pid"
	cp "$state/containerd.pid" "$state/started-containerd"
	for _ in $(seq 1 150); do
		ctr --address "$ctrd_sock" version >/dev/null 2>&1 && break
		kill -0 "$(cat "$state/containerd.pid")" 2>/dev/null || die "containerd exited; see $state/containerd.log: $(tail -n 3 "$state/containerd.log")"
		sleep 0.2
	done
	ctr --address "$ctrd_sock" version >/dev/null 2>&1 || die "containerd did not come up on $ctrd_sock"
fi

# 5. dockerd, as docker.service starts it; a running one reloads its
# daemon.json on SIGHUP.
dk() { docker -H "unix://$sock" "$@"; }
if dk version >/dev/null 2>&1; then
	if [ -n "$changed" ]; then
		say "daemon.json changed: reloading dockerd (SIGHUP)"
		kill -HUP "$(cat "$pidfile")"
		for _ in $(seq 1 50); do
			dk info --format '{{json .Runtimes}}' | grep -q '"runvirt"' && break
			sleep 0.2
		done
	else
		say "dockerd already running on $sock"
	fi
else
	say "starting dockerd (log: $state/dockerd.log)"
	dockerd_args=(--containerd="$ctrd_sock")
	if [ -n "$current" ]; then
		# Everything of its own; docker-proxy named, or dockerd would
		# take Debian's (20.10's, which speaks another protocol).
		dockerd_args+=(--config-file="$conf" -H "unix://$sock" --pidfile="$pidfile"
			--data-root="$droot" --exec-root="$state/exec" --userland-proxy-path="$moby_bin/docker-proxy")
	fi
	setsid dockerd "${dockerd_args[@]}" >>"$state/dockerd.log" 2>&1 </dev/null &
	dpid=$!
	echo "$dpid" >"$state/started-dockerd"
	for _ in $(seq 1 300); do
		dk version >/dev/null 2>&1 && break
		kill -0 "$dpid" 2>/dev/null || die "dockerd exited; see $state/dockerd.log: $(tail -n 3 "$state/dockerd.log")"
		sleep 0.2
	done
	dk version >/dev/null 2>&1 || die "dockerd did not come up on $sock; see $state/dockerd.log"
fi
dk info --format '{{json .Runtimes}}' | grep -q '"runvirt"' || die "dockerd on $sock has no runtime runvirt"

# 6. A busybox image, built here (no registry needed) as a docker-archive.
if ! dk image inspect "$image" >/dev/null 2>&1; then
	say "building and loading $image"
	work=$(mktemp -d /tmp/runvirt-dimage.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	"$(dirname "$0")/busybox-archive.sh" "$image" "$work/busybox.tar"
	dk load -i "$work/busybox.tar" >&2
	dk image inspect "$image" >/dev/null 2>&1 || die "docker load did not create $image"
fi

echo "$sock"
