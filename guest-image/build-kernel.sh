#!/usr/bin/env bash
# build-kernel.sh — build runvirt's minimal guest kernel from Debian's
# linux-source package: allnoconfig plus guest-image/kernel.config, every
# driver the guest needs built in, no modules.
#
# Usage: guest-image/build-kernel.sh --out DIR [--cache DIR] [--jobs N] [--config FRAGMENT]
#
# Produces:
#   DIR/vmlinux         uncompressed ELF with a PVH entry note: boot this one
#                       (-kernel DIR/vmlinux)
#   DIR/vmlinuz         the same kernel as a bzImage
#   DIR/kernel.release  its release string (VERSION-runvirt)
#   DIR/config          its full .config
# and works in DIR/src (the unpacked source) and DIR/obj (kbuild's output).
#
# With --cache CACHE the build happens once per machine, not per checkout:
# CACHE/work holds the source and kbuild's objects (shared by every
# checkout, one build at a time under CACHE/lock) and CACHE/out/KEY the
# finished kernel of each set of inputs (KEY: a hash of the fragment, this
# script and the source package's version), which is copied to DIR.
#
# Idempotent: when DIR/stamp shows that the fragment, this script and the
# source package are the ones DIR/vmlinux was built from, it does nothing.
# Otherwise kbuild rebuilds only what changed. Missing build dependencies
# are installed with apt-get (as root; otherwise it names them and stops).
set -euo pipefail

# The source package; its tarball unpacks to linux-source-X.Y/.
SOURCE_PKG="${RUNVIRT_KERNEL_SOURCE_PKG:-linux-source-6.1}"
# What the build needs beyond the source. libssl-dev is not here: with
# CONFIG_MODULES=n and no trusted keys nothing links against OpenSSL.
BUILD_DEPS=(build-essential bc bison flex libelf-dev xz-utils)

die() {
	echo "build-kernel.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT=""
CACHE=""
FRAGMENT="$HERE/kernel.config"
JOBS="$(nproc 2>/dev/null || echo 1)"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT="${2:?--out needs a value}"; shift 2 ;;
	--out=*) OUT="${1#*=}"; shift ;;
	--cache) CACHE="${2:?--cache needs a value}"; shift 2 ;;
	--cache=*) CACHE="${1#*=}"; shift ;;
	--jobs | -j) JOBS="${2:?--jobs needs a value}"; shift 2 ;;
	--jobs=*) JOBS="${1#*=}"; shift ;;
	--config) FRAGMENT="${2:?--config needs a value}"; shift 2 ;;
	--config=*) FRAGMENT="${1#*=}"; shift ;;
	-h | --help) usage ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ -n "$OUT" ] || die "missing --out DIR"
[ -f "$FRAGMENT" ] || die "config fragment $FRAGMENT: no such file"
case "$JOBS" in '' | *[!0-9]* | 0) die "--jobs: want a positive number, got \"$JOBS\"" ;; esac
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
FRAGMENT="$(cd "$(dirname "$FRAGMENT")" && pwd)/$(basename "$FRAGMENT")"

installed() { # PKG: is it installed?
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The stamp names every input of the build. The source is named by its
# package version; an uninstalled source package does not make a built
# kernel stale.
stamp_of() { # VERSION
	printf 'fragment %s\nscript %s\nsource %s %s\n' "$(sha "$FRAGMENT")" "$(sha "$0")" "$SOURCE_PKG" "$1"
}
install_deps() { # the source and the build tools, installed only when missing
	missing=()
	for p in "$SOURCE_PKG" "${BUILD_DEPS[@]}"; do
		installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
			die "missing packages: ${missing[*]} (as root: apt-get install ${missing[*]})"
		fi
		echo "build-kernel.sh: installing ${missing[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
			apt-get update -qq >&2
			apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
		fi
	fi
}

# The machine-wide cache: a hit is a copy; a miss builds in CACHE/work
# (this script without --cache) under the lock and files the result.
KERNEL_FILES="vmlinux vmlinuz kernel.release config"
if [ -n "$CACHE" ]; then
	install_deps
	mkdir -p "$CACHE/out"
	CACHE="$(cd "$CACHE" && pwd)"
	stamp="$(stamp_of "$(pkg_version "$SOURCE_PKG")")"
	key="$(printf '%s\n' "$stamp" | sha256sum | cut -c1-16)"
	filed="$CACHE/out/$key"
	if [ ! -f "$filed/stamp" ]; then
		exec 9>"$CACHE/lock"
		if ! flock -n 9; then
			echo "build-kernel.sh: waiting for another build in $CACHE" >&2
			flock 9
		fi
		if [ ! -f "$filed/stamp" ]; then
			echo "build-kernel.sh: no kernel for these inputs in $CACHE: building it once for this machine (about 10 minutes on 2 cores, 1.7 GB)" >&2
			started=$(date +%s)
			"$0" --out "$CACHE/work" --jobs "$JOBS" --config "$FRAGMENT"
			rm -rf "$filed.tmp"
			mkdir -p "$filed.tmp"
			for f in $KERNEL_FILES; do cp "$CACHE/work/$f" "$filed.tmp/$f"; done
			printf '%s\n' "$stamp" >"$filed.tmp/stamp"
			mv "$filed.tmp" "$filed"
			echo "build-kernel.sh: built in $(($(date +%s) - started)) s" >&2
			# Keep the four newest kernels; each is ~30 MB.
			ls -1dt "$CACHE"/out/*/ 2>/dev/null | tail -n +5 | xargs -r rm -rf
		fi
		exec 9>&-
	fi
	if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ]; then
		echo "build-kernel.sh: $OUT/vmlinux ($(cat "$OUT/kernel.release")) is up to date" >&2
		exit 0
	fi
	rm -f "$OUT/stamp"
	for f in $KERNEL_FILES; do
		cp "$filed/$f" "$OUT/$f.tmp"
		mv "$OUT/$f.tmp" "$OUT/$f"
	done
	printf '%s\n' "$stamp" >"$OUT/stamp"
	echo "build-kernel.sh: kernel $(cat "$OUT/kernel.release") from $filed" >&2
	exit 0
fi

if [ -f "$OUT/stamp" ] && [ -f "$OUT/vmlinux" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/kernel.release" ]; then
	built_version="$(sed -n "s/^source $SOURCE_PKG //p" "$OUT/stamp")"
	have_version="$(pkg_version "$SOURCE_PKG")"
	if [ -n "$built_version" ] && [ "$(stamp_of "${have_version:-$built_version}")" = "$(cat "$OUT/stamp")" ]; then
		echo "build-kernel.sh: $OUT/vmlinux ($(cat "$OUT/kernel.release")) is up to date" >&2
		exit 0
	fi
fi

install_deps

VERSION="$(pkg_version "$SOURCE_PKG")"
TARBALL="$(dpkg-query -L "$SOURCE_PKG" | grep -E '^/usr/src/linux-source-[^/]*\.tar\.(xz|bz2|gz)$' | head -n 1)"
[ -n "$TARBALL" ] && [ -f "$TARBALL" ] || die "$SOURCE_PKG $VERSION: no source tarball under /usr/src"

# Unpack once per package version, into a directory of its own.
SRC="$OUT/src/$SOURCE_PKG-$VERSION"
if [ ! -f "$SRC/.unpacked" ]; then
	echo "build-kernel.sh: unpacking $TARBALL" >&2
	rm -rf "$OUT/src"
	mkdir -p "$SRC"
	tar -xf "$TARBALL" -C "$SRC" --strip-components=1
	touch "$SRC/.unpacked"
	# A new source tree: the old objects are of no use.
	rm -rf "$OUT/obj"
fi

OBJ="$OUT/obj"
mkdir -p "$OBJ"
# The banner ("Linux version ... (USER@HOST)") names no build machine.
export KBUILD_BUILD_USER=runvirt KBUILD_BUILD_HOST=runvirt
# Called from runvirt's Makefile: its command-line variables (VERSION=...,
# V=...) must not reach kbuild, where VERSION is the kernel's.
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL
kmake() { make -C "$SRC" O="$OBJ" -j"$JOBS" "$@"; }

# The configuration: allnoconfig with the fragment's values forced
# (merge_config.sh -n), then olddefconfig. Rewriting an unchanged .config
# costs nothing: kbuild rebuilds only what depends on a changed option.
(
	cd "$SRC"
	scripts/kconfig/merge_config.sh -n -O "$OBJ" "$FRAGMENT" >"$OBJ/merge_config.log" 2>&1
) || {
	cat "$OBJ/merge_config.log" >&2
	die "merge_config.sh failed"
}
kmake -s olddefconfig >/dev/null

# Every value the fragment asks for must be in the result: an option that a
# missing dependency switched off would otherwise go unnoticed.
bad=""
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) sym="${line%%=*}" want="$line" ;;
	"# CONFIG_"*" is not set") sym="${line#\# }" sym="${sym%% *}" want="" ;;
	*) continue ;;
	esac
	got="$(grep -E "^$sym=" "$OBJ/.config" || true)"
	if [ "$got" != "$want" ]; then
		bad="$bad
  $sym: fragment has '${want:-not set}', .config has '${got:-not set}'"
	fi
done <"$FRAGMENT"
[ -z "$bad" ] || die "the fragment's values did not all take (missing dependency?):$bad"

echo "build-kernel.sh: building $SOURCE_PKG $VERSION in $OBJ with -j$JOBS" >&2
kmake bzImage
REL="$(kmake -s kernelrelease)"
[ -n "$REL" ] || die "kbuild gave no kernel release"

# QEMU boots the ELF directly only through its PVH entry note.
if command -v readelf >/dev/null && ! readelf -n "$OBJ/vmlinux" | grep -q 'note type: (0x00000012)'; then
	die "$OBJ/vmlinux has no PVH entry note (CONFIG_PVH=y missing?)"
fi

# Publish: each file replaced atomically, the stamp last.
rm -f "$OUT/stamp"
for f in vmlinux:vmlinux arch/x86/boot/bzImage:vmlinuz .config:config; do
	cp "$OBJ/${f%%:*}" "$OUT/${f#*:}.tmp"
	mv "$OUT/${f#*:}.tmp" "$OUT/${f#*:}"
done
echo "$REL" >"$OUT/kernel.release.tmp" && mv "$OUT/kernel.release.tmp" "$OUT/kernel.release"
stamp_of "$VERSION" >"$OUT/stamp"
echo "build-kernel.sh: kernel $REL: vmlinux $(stat -c %s "$OUT/vmlinux") bytes, vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes in $OUT" >&2
