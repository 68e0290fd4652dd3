#!/usr/bin/env bash
# build-clients.sh — build today's releases of the container clients from
# the Go module proxy, once per machine, into a cache outside the checkout:
# containerd 2 (containerd, ctr, containerd-shim-runc-v2), the docker
# engine 29 (dockerd, docker-proxy; driven by the docker CLI already on the
# machine) and nerdctl 2. The client tests run against them with
# RUNVIRT_CLIENTS=current (see setup-containerd.sh, setup-docker.sh).
#
#   build-clients.sh                 build what is missing; prints the timings
#                                    and, last, the cache's path
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
# - containerd v2.2.1: the 2.2 line, config version 3 (2.4.2, the newest
#   the proxy serves, also builds and reads version 3, migrating it to its
#   own version 4); no replace directives, so `go install pkg@version`
#   builds it.
# - moby v2.0.0-beta.24 (docker engine 29, API 1.56): beta.25 needs a
#   swarmkit pseudo-version the proxy refuses.
# - nerdctl v2.3.1: v2.4.2 (the newest) needs moby/v2 v2.0.0-beta.28, which
#   the proxy refuses, and it serves no later v2.3.x. Every nerdctl 2 has a
#   replace directive (its test framework tigron, a module in its own tree
#   that the proxy does not serve), which `go install pkg@version` refuses:
#   see build_nerdctl.
containerd_version=v2.2.1
moby_version=v2.0.0-beta.24
nerdctl_version=v2.3.1

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
# of NAME) into NAME's directory unless it is there. With MODDIR set, from
# that module (packages without a version).
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
	if ! (cd "${MODDIR:-.}" && GOBIN="$tmp/bin" CGO_ENABLED=1 GOFLAGS="${GOFLAGS:-} -trimpath${MODDIR:+ -mod=mod}" \
		nice -n 19 "$go" install ${tags:+-tags "$tags"} "$@" >&2); then
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

# build_nerdctl: nerdctl from a module of our own that requires it, with
# the replace directive nerdctl's own go.mod has. tigron is nerdctl's test
# framework; the one package of it that nerdctl's binary reaches
# (pkg/testutil, through cmd/nerdctl/helpers) uses only the interface tig.T,
# so a stand-in module declaring that interface takes its place. The versions
# of everything else are nerdctl's go.mod's (minimal version selection over
# one requirement).
build_nerdctl() {
	if [ -d "$(dir nerdctl)/bin" ]; then
		say "nerdctl: $(dir nerdctl) is built"
		return 0
	fi
	m=$(mktemp -d /tmp/runvirt-nerdctl-mod.XXXXXX) # global: the trap runs after return
	trap 'rm -rf "$m"' EXIT
	mkdir -p "$m/tigron/tig"
	printf 'module github.com/containerd/nerdctl/mod/tigron\n\ngo 1.23\n' >"$m/tigron/go.mod"
	cat >"$m/tigron/tig/tig.go" <<'EOF'
// Package tig stands in for nerdctl's test framework: what its non-test
// code needs of it to compile.
package tig

// T is what nerdctl's pkg/testutil calls on a test.
type T interface {
	Log(args ...any)
	FailNow()
}
EOF
	cat >"$m/go.mod" <<EOF
module runvirt.invalid/build-nerdctl

go $("$go" env GOVERSION | sed 's/^go//')

require github.com/containerd/nerdctl/v2 $nerdctl_version

replace github.com/containerd/nerdctl/mod/tigron v0.0.0 => ./tigron
EOF
	MODDIR=$m build nerdctl "" github.com/containerd/nerdctl/v2/cmd/nerdctl
}
build_nerdctl
echo "$cache"
