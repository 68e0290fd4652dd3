#!/usr/bin/env bash
# setup-docker.sh — install docker's engine (Debian's docker.io: dockerd
# 20.10) if missing, start a private dockerd for runvirt in the background,
# and load a locally built busybox image into it.
# Idempotent: run it as often as you like; it only does what is missing.
#
# The instance is a separate dockerd (its own socket, data root, exec root,
# pid file, log and config; it supervises its own containerd under the exec
# root), so it neither needs nor disturbs a system dockerd. Its config
# registers runvirt as the runtime "runvirt" (the daemon.json "runtimes" key).
# Point the docker client at it with:
#
#     export DOCKER_HOST=unix:///run/runvirt-docker/docker.sock
#     docker run --runtime runvirt --rm --network none runvirt-busybox echo hello
#
# Environment (all optional):
#   RUNVIRT_BIN             runvirt binary (default: <repo>/bin/runvirt)
#   RUNVIRT_CONFIG          runvirt config the runtime reads (default: one
#                           written here that boots <repo>/build/guest/)
#   RUNVIRT_TEST_MACHINE    machine type in that config (default: runvirt's)
#   RUNVIRT_DOCKER_STATE    socket, pid file, config, log and exec root
#                           (default: /run/runvirt-docker)
#   RUNVIRT_DOCKER_ROOT     dockerd's data root (/var/lib/runvirt-docker)
#   RUNVIRT_DOCKER_EXEC_ROOT  dockerd's exec root (/run/rvd). It must be short:
#                           dockerd 20.10 gives the runtime
#                           --root EXEC_ROOT/runtime-runc/moby, and runvirt's
#                           sockets (EXEC_ROOT/runtime-runc/moby/<64-hex id>/
#                           agent.sock) must fit in 107 bytes, which leaves
#                           EXEC_ROOT 13 characters (10 with docker >= 23,
#                           which says runtime-runvirt; the default
#                           /run/docker has 11).
#   RUNVIRT_DOCKER_BRIDGE   "none" starts dockerd with --bridge=none (no
#                           docker0, no iptables rules); default: docker's own
#   RUNVIRT_DOCKER_IMAGE    image name (runvirt-busybox:latest)
#
# Prints the socket's path as its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${RUNVIRT_DOCKER_STATE:-/run/runvirt-docker}
droot=${RUNVIRT_DOCKER_ROOT:-/var/lib/runvirt-docker}
sock=$state/docker.sock
conf=$state/daemon.json
log=$state/dockerd.log
pidfile=$state/dockerd.pid
execroot=${RUNVIRT_DOCKER_EXEC_ROOT:-/run/rvd}
runvirt=${RUNVIRT_BIN:-$repo/bin/runvirt}
image=${RUNVIRT_DOCKER_IMAGE:-runvirt-busybox:latest}

say() { echo "setup-docker: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$runvirt" ] || die "$runvirt is missing (run: make)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

# 1. dockerd (Debian's docker.io also brings containerd, runc and docker-init).
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
	say "installing docker.io"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2
fi

# See RUNVIRT_DOCKER_EXEC_ROOT above (docker >= 23 says runtime-runvirt: 3 more).
# len("/runtime-runvirt/moby/") + 64 + len("/agent.sock") = 97.
[ $((${#execroot} + 97)) -le 107 ] ||
	die "exec root $execroot is too long for runvirt's socket paths (at most 10 characters)"
mkdir -p "$state" "$droot" "$execroot"
dk() { docker -H "unix://$sock" "$@"; }

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

# 3. dockerd's config (what /etc/docker/daemon.json holds for the system
# dockerd): the runtime "runvirt". The rest goes on the command line so that
# it stays next to the paths it names.
bridge_json=
[ "${RUNVIRT_DOCKER_BRIDGE:-}" = none ] && bridge_json=',
  "bridge": "none"'
cat >"$conf.new" <<EOF
{
  "runtimes": {
    "runvirt": {
      "path": "$runvirt"
    }
  }$bridge_json
}
EOF
# The environment dockerd passes on to the runtime is part of its setup too.
echo "RUNVIRT_CONFIG=$RUNVIRT_CONFIG" >"$state/dockerd.env.new"
restart=
for f in "$conf" "$state/dockerd.env"; do
	if cmp -s "$f.new" "$f"; then
		rm "$f.new"
	else
		mv "$f.new" "$f"
		restart=1
	fi
done

# 4. Start dockerd unless it already answers on the socket.
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$restart" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
	say "config changed: restarting dockerd $pid"
	kill "$pid"
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
fi
if dk version >/dev/null 2>&1; then
	say "dockerd already running on $sock"
else
	say "starting dockerd (log: $log)"
	# dockerd passes its environment on to containerd, the shims and the
	# runtime: runvirt reads RUNVIRT_CONFIG from it.
	RUNVIRT_CONFIG=$RUNVIRT_CONFIG setsid dockerd \
		--config-file "$conf" \
		-H "unix://$sock" \
		--data-root "$droot" \
		--exec-root "$execroot" \
		--pidfile "$pidfile" \
		>>"$log" 2>&1 </dev/null &
	dpid=$!
	for _ in $(seq 1 300); do
		dk version >/dev/null 2>&1 && break
		kill -0 "$dpid" 2>/dev/null || die "dockerd exited; see $log: $(tail -n 3 "$log")"
		sleep 0.2
	done
	dk version >/dev/null 2>&1 || die "dockerd did not come up on $sock; see $log"
fi
dk info --format '{{json .Runtimes}}' | grep -q '"runvirt"' || die "dockerd on $sock has no runtime runvirt"

# 5. A busybox image, built here (no registry needed) as a docker-archive.
if ! dk image inspect "$image" >/dev/null 2>&1; then
	say "building and loading $image"
	work=$(mktemp -d /tmp/runvirt-dimage.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	"$(dirname "$0")/busybox-archive.sh" "$image" "$work/busybox.tar"
	dk load -i "$work/busybox.tar" >&2
	dk image inspect "$image" >/dev/null 2>&1 || die "docker load did not create $image"
fi

echo "$sock"
