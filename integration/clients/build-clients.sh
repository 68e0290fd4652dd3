#!/usr/bin/env bash
# build-clients.sh — build today's releases of the container clients from
# the Go module proxy, once per machine, into a cache outside the checkout:
# containerd 2 (containerd, ctr, containerd-shim-runc-v2), the docker
# engine 29 (dockerd, docker-proxy; driven by the docker CLI already on the
# machine) and nerdctl 2. The client tests run against them with
# RUNVIRT_CLIENTS=current (see setup-containerd.sh, setup-docker.sh).
#
#   build-clients.sh                 build what is missing; prints the timings
#   build-clients.sh --bindir NAME   print the bin directory of NAME
#                                    (containerd, moby, nerdctl), or fail if
#                                    it was not built; builds nothing
#
# Each client lands in CACHE/NAME-VERSION/bin, written whole or not at all
# (built into a temporary directory, then renamed), so a present directory
# is a complete build and another version sits beside it. The Go build
# cache is the go command's own (GOCACHE), kept between runs.
#
# Environment (all optional):
#   RUNVIRT_CLIENTS_CACHE   the cache (default: /var/cache/runvirt/clients)
#   GO                      the go command (default: go)
set -euo pipefail

cache=${RUNVIRT_CLIENTS_CACHE:-/var/cache/runvirt/clients}
go=${GO:-go}

# The versions, and why not newer ones:
# - containerd v2.4.2: the newest release the proxy serves; no replace
#   directives, so `go install pkg@version` builds it.
# - moby v2.0.0-beta.24 (docker engine 29, API 1.56): beta.25 needs a
#   swarmkit pseudo-version the proxy refuses.
# - nerdctl v2.0.5: v2.4.2 (the newest) has replace directives, which
#   `go install pkg@version` refuses, and needs a moby/v2 beta the proxy
#   refuses; v2.1.x needs one too. v2.0.5 builds as it is.
containerd_version=v2.4.2
moby_version=v2.0.0-beta.24
nerdctl_version=v2.0.5

say() { echo "build-clients: $*" >&2; }
die() { say "$*"; exit 1; }

# dir NAME: where NAME's build lives.
dir() {
	case $1 in
	containerd) echo "$cache/containerd-$containerd_version" ;;
	moby) echo "$cache/moby-$moby_version" ;;
	nerdctl) echo "$cache/nerdctl-$nerdctl_version" ;;
	*) die "unknown client $1 (want containerd, moby or nerdctl)" ;;
	esac
}

if [ "${1:-}" = --bindir ]; then
	[ $# -eq 2 ] || die "usage: build-clients.sh --bindir containerd|moby|nerdctl"
	d=$(dir "$2")
	[ -d "$d/bin" ] || die "$2 is not built in $d (run: integration/clients/build-clients.sh, ~10 min the first time)"
	echo "$d/bin"
	exit 0
fi
[ $# -eq 0 ] || die "unknown argument: $1 (want none or --bindir NAME)"
command -v "$go" >/dev/null || die "$go is not installed (run: make deps)"
# One build at a time: two runs would build the same thing twice.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# build NAME TAGS PACKAGE...: go install the packages (all at the version
# of NAME) into NAME's directory unless it is there.
build() {
	local name=$1 tags=$2 d tmp start
	shift 2
	d=$(dir "$name")
	if [ -d "$d/bin" ]; then
		say "$name: $d is built"
		return 0
	fi
	rm -rf "$d".tmp.* # what a killed run left
	tmp=$(mktemp -d "$d.tmp.XXXXXX")
	say "$name: building $* (tags: ${tags:-none})"
	start=$(date +%s)
	# CGO for containerd's and dockerd's cgo parts (seccomp is not among
	# them: libseccomp is only the runc shim's optional helper). nice: the
	# machine may be running tests meanwhile.
	if ! GOBIN="$tmp/bin" CGO_ENABLED=1 GOFLAGS="${GOFLAGS:-} -trimpath" \
		nice -n 19 "$go" install ${tags:+-tags "$tags"} "$@" >&2; then
		rm -rf "$tmp"
		die "$name: go install failed"
	fi
	mv "$tmp" "$d"
	say "$name: built in $(($(date +%s) - start)) s into $d/bin"
}

# btrfs's cgo needs its headers; no_btrfs leaves that snapshotter out.
build containerd no_btrfs \
	"github.com/containerd/containerd/v2/cmd/containerd@$containerd_version" \
	"github.com/containerd/containerd/v2/cmd/ctr@$containerd_version" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version"
build moby "" \
	"github.com/moby/moby/v2/cmd/dockerd@$moby_version" \
	"github.com/moby/moby/v2/cmd/docker-proxy@$moby_version"
build nerdctl "" \
	"github.com/containerd/nerdctl/v2/cmd/nerdctl@$nerdctl_version"
echo "$cache"
