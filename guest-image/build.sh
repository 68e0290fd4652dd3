#!/usr/bin/env bash
# build.sh — build the guest kernel + initramfs for runvirt, from the host's
# distro kernel (Debian's linux-image-amd64) or from the minimal kernel that
# guest-image/build-kernel.sh builds.
#
# Usage: guest-image/build.sh --agent PATH --out DIR
#                             [--kernel-release REL | --kernel-dir KDIR]
#                             [--compress none|gzip] [--agent-version V]
#
# Produces:
#   DIR/vmlinuz         copy of /boot/vmlinuz-REL (KDIR/vmlinuz)
#   DIR/initrd.img      newc cpio (uncompressed by default: see README.md for
#                       the TCG boot times that decided it)
#   DIR/vmlinux         the same kernel uncompressed, an ELF that QEMU boots
#                       through PVH (-kernel DIR/vmlinux): under TCG this saves
#                       the ~3-4 s the guest spends decompressing the bzImage.
#                       Skipped with a warning if it cannot be extracted.
#                       (KDIR/vmlinux, as built.)
#   DIR/kernel.release  REL (KDIR/kernel.release)
#   DIR/agent.version   V (also /etc/runvirt/agent.version in the initramfs,
#                       which `runvirt --version` reports)
#
# The initramfs holds /init (the static agent), the modules the guest needs
# under /lib/modules/REL/ and /etc/runvirt/modules: their paths in load order,
# resolved from modules.dep (dependencies first). No shell, no busybox.
# With --kernel-dir the kernel has all of it built in (CONFIG_MODULES=n,
# checked against KDIR/config): no modules, and an empty
# /etc/runvirt/modules.
# The output is reproducible: fixed mtimes, sorted entries, owner root.
set -euo pipefail

# The modules the agent loads. Dependencies come from modules.dep.
WANT_MODULES=(
	virtio_pci virtio_mmio virtio_console
	9p 9pnet_virtio
	virtiofs
	vmw_vsock_virtio_transport
	virtio_rng virtio_net overlay
)

die() {
	echo "build.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# CONFIG_ options a built-in kernel (--kernel-dir) must have =y: what the
# modules above provide, and what the agent needs besides.
WANT_BUILTIN=(
	VIRTIO_PCI VIRTIO_MMIO VIRTIO_CONSOLE
	NET_9P 9P_FS NET_9P_VIRTIO
	FUSE_FS VIRTIO_FS
	VSOCKETS VIRTIO_VSOCKETS
	HW_RANDOM_VIRTIO VIRTIO_NET
	PVH BLK_DEV_INITRD DEVTMPFS TMPFS UNIX98_PTYS CGROUPS SECCOMP_FILTER
)

REL=""
KDIR=""
AGENT=""
OUT=""
COMPRESS="none"
AGENT_VERSION="unknown"
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel-release) REL="${2:?--kernel-release needs a value}"; shift 2 ;;
	--kernel-release=*) REL="${1#*=}"; shift ;;
	--kernel-dir) KDIR="${2:?--kernel-dir needs a value}"; shift 2 ;;
	--kernel-dir=*) KDIR="${1#*=}"; shift ;;
	--agent) AGENT="${2:?--agent needs a value}"; shift 2 ;;
	--agent=*) AGENT="${1#*=}"; shift ;;
	--out) OUT="${2:?--out needs a value}"; shift 2 ;;
	--out=*) OUT="${1#*=}"; shift ;;
	--agent-version) AGENT_VERSION="${2:?--agent-version needs a value}"; shift 2 ;;
	--agent-version=*) AGENT_VERSION="${1#*=}"; shift ;;
	--compress) COMPRESS="${2:?--compress needs a value}"; shift 2 ;;
	--compress=*) COMPRESS="${1#*=}"; shift ;;
	-h | --help) usage ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

[ -n "$AGENT" ] || die "missing --agent PATH (the static runvirt-agent binary)"
[ -n "$OUT" ] || die "missing --out DIR"
case "$COMPRESS" in none | gzip) ;; *) die "--compress: want none or gzip, got \"$COMPRESS\"" ;; esac

for tool in cpio find sort awk; do
	command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install cpio findutils coreutils gawk)"
done

if [ -n "$KDIR" ]; then
	# A kernel of our own: everything built in, nothing to resolve.
	for f in vmlinux vmlinuz kernel.release config; do
		[ -f "$KDIR/$f" ] || die "kernel dir $KDIR: missing $f (run: make kernel)"
	done
	KREL="$(cat "$KDIR/kernel.release")"
	[ -z "$REL" ] || [ "$REL" = "$KREL" ] || die "--kernel-release $REL, but $KDIR holds $KREL"
	REL="$KREL"
	if grep -q '^CONFIG_MODULES=y' "$KDIR/config"; then
		die "kernel $REL in $KDIR: built with CONFIG_MODULES=y; the image has no modules for it"
	fi
	for opt in "${WANT_BUILTIN[@]}"; do
		grep -q "^CONFIG_$opt=y\$" "$KDIR/config" || die "kernel $REL in $KDIR: CONFIG_$opt is not built in (see guest-image/kernel.config)"
	done
	KERNEL="$KDIR/vmlinuz"
fi

# Kernel release: the newest one that has both modules and a kernel image.
if [ -z "$REL" ]; then
	REL="$(
		for d in /lib/modules/*/; do
			r="$(basename "$d")"
			[ -f "/boot/vmlinuz-$r" ] && echo "$r"
		done | sort -V | tail -n 1
	)"
	[ -n "$REL" ] || die "no kernel found: no /lib/modules/REL with a matching /boot/vmlinuz-REL (apt-get install linux-image-amd64)"
fi
if [ -z "$KDIR" ]; then
	KERNEL="/boot/vmlinuz-$REL"
	MODDIR="/lib/modules/$REL"
	[ -f "$KERNEL" ] || die "kernel $REL: missing $KERNEL"
	[ -d "$MODDIR" ] || die "kernel $REL: missing module directory $MODDIR"
	[ -f "$MODDIR/modules.dep" ] || die "kernel $REL: missing $MODDIR/modules.dep (run: depmod $REL)"
fi

# The agent must be a static ELF: there is no dynamic loader in the image.
[ -f "$AGENT" ] || die "agent $AGENT: no such file"
if ! head -c 4 "$AGENT" | od -An -c | grep -q 'E   L   F'; then
	die "agent $AGENT: not an ELF executable"
fi
if command -v readelf >/dev/null; then
	if readelf -lW "$AGENT" 2>/dev/null | grep -q -E 'INTERP|Requesting program interpreter'; then
		die "agent $AGENT: dynamically linked (build it with CGO_ENABLED=0)"
	fi
	if readelf -dW "$AGENT" 2>/dev/null | grep -q NEEDED; then
		die "agent $AGENT: needs shared libraries (build it with CGO_ENABLED=0)"
	fi
else
	echo "build.sh: warning: readelf not found, cannot check that $AGENT is static" >&2
fi

# Resolve the module set to .ko paths in load order: a depth-first walk of
# modules.dep that emits every dependency before the module needing it.
# Module names compare with '-' and '_' as equals (virtio_rng is virtio-rng.ko).
# A built-in kernel (--kernel-dir) needs none.
ORDER=""
[ -n "$KDIR" ] || ORDER="$(
	awk -v want="${WANT_MODULES[*]}" '
	function norm(p,   b) {
		b = p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b); gsub(/-/, "_", b)
		return b
	}
	function visit(p,   i, n, d) {
		if (p in state) {
			if (state[p] == 1) { print "dependency cycle at " p > "/dev/stderr"; exit 3 }
			return
		}
		if (!(p in deps)) { print "modules.dep lists " p " as a dependency but has no entry for it" > "/dev/stderr"; exit 3 }
		state[p] = 1
		n = split(deps[p], d, " ")
		for (i = 1; i <= n; i++) visit(d[i])
		state[p] = 2
		print p
	}
	{
		p = $1; sub(/:$/, "", p)
		deps[p] = ""
		for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i
		byname[norm(p)] = p
	}
	END {
		n = split(want, w, " ")
		for (i = 1; i <= n; i++) {
			m = w[i]; gsub(/-/, "_", m)
			if (!(m in byname)) { missing = missing " " w[i]; continue }
		}
		if (missing != "") { print "missing from modules.dep:" missing > "/dev/stderr"; exit 4 }
		for (i = 1; i <= n; i++) { m = w[i]; gsub(/-/, "_", m); visit(byname[m]) }
	}' "$MODDIR/modules.dep"
)" || die "kernel $REL: cannot resolve modules ${WANT_MODULES[*]} from $MODDIR/modules.dep (built in? then drop them from WANT_MODULES)"

# newc_node NAME MODE MAJOR MINOR INO: one newc cpio entry for a device
# node, written without mknod so that the build needs no root. The kernel
# needs /dev/console to give init its stdio, and the Go runtime of a PID 1
# without stdio opens /dev/null or dies.
newc_node() {
	local name="$1" mode="$2" major="$3" minor="$4" ino="$5"
	local namesize=$((${#name} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		"$ino" "$mode" 0 0 1 "$EPOCH" 0 0 0 "$major" "$minor" "$namesize" 0
	printf '%s\0' "$name"
	head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
}

# extract_vmlinux BZIMAGE: write the uncompressed kernel ELF to stdout, as
# the kernel's scripts/extract-vmlinux does: find the compressed payload by its
# magic and decompress from there. Fails unless the result is an ELF with a
# PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, type 0x12), which QEMU needs to
# boot it directly.
extract_vmlinux() {
	local img="$1" magic tool off tmp
	tmp="$(mktemp "${TMPDIR:-/tmp}/runvirt-vmlinux.XXXXXX")"
	for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
		tool="${magic%%:*}"
		command -v "$tool" >/dev/null || continue
		off="$(LC_ALL=C grep -obUaP "${magic#*:}" "$img" | head -n 1 | cut -d: -f1)" || true
		[ -n "$off" ] || continue
		case "$tool" in
		xz) tail -c +$((off + 1)) "$img" | xz -dc --single-stream >"$tmp" 2>/dev/null || true ;;
		zstd) tail -c +$((off + 1)) "$img" | zstd -qdc >"$tmp" 2>/dev/null || true ;;
		gzip) tail -c +$((off + 1)) "$img" | gzip -dc >"$tmp" 2>/dev/null || true ;;
		esac
		if command -v readelf >/dev/null && readelf -n "$tmp" 2>/dev/null | grep -q 'note type: (0x00000012)'; then
			cat "$tmp"
			rm -f "$tmp"
			return 0
		fi
	done
	rm -f "$tmp"
	return 1
}

# Stage the tree. Everything in the image comes from here.
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/runvirt-initrd.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
umask 022
mkdir -p "$STAGE"/{proc,sys,run,tmp,etc/runvirt}
[ -n "$KDIR" ] || mkdir -p "$STAGE/lib/modules/$REL"
install -m 0755 "$AGENT" "$STAGE/init"
echo "$REL" >"$STAGE/etc/runvirt/kernel.release"
echo "$AGENT_VERSION" >"$STAGE/etc/runvirt/agent.version"

: >"$STAGE/etc/runvirt/modules"
while IFS= read -r rel; do
	src="$MODDIR/$rel"
	[ -f "$src" ] || die "module $rel: missing $src"
	dst="lib/modules/$REL/${rel%.xz}"
	dst="${dst%.zst}"
	dst="${dst%.gz}"
	mkdir -p "$STAGE/$(dirname "$dst")"
	# finit_module gets plain .ko files: decompress here rather than rely
	# on the kernel's CONFIG_MODULE_DECOMPRESS.
	case "$rel" in
	*.ko.xz) xz -dc "$src" >"$STAGE/$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$STAGE/$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$STAGE/$dst" ;;
	*) cp "$src" "$STAGE/$dst" ;;
	esac
	chmod 0644 "$STAGE/$dst"
	echo "/$dst" >>"$STAGE/etc/runvirt/modules"
done < <([ -z "$ORDER" ] || printf '%s\n' "$ORDER")

# Reproducible archive: one fixed mtime, sorted names, root-owned.
# SOURCE_DATE_EPOCH is honoured; the default is the kernel image's mtime so
# the same kernel + agent always give the same bytes.
EPOCH="${SOURCE_DATE_EPOCH:-$(stat -c %Y "$KERNEL")}"
find "$STAGE" -exec touch -h -d "@$EPOCH" {} +

mkdir -p "$OUT"
TMPOUT="$OUT/.initrd.img.tmp"
(
	cd "$STAGE"
	# The device nodes go first, as an archive of their own (the kernel
	# unpacks concatenated archives), then the staged tree.
	newc_node dev $((0040755)) 0 0 1
	newc_node dev/console $((0020600)) 5 1 2
	newc_node dev/null $((0020666)) 1 3 3
	newc_node TRAILER!!! 0 0 0 0
	find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible
) >"$TMPOUT.cpio"
case "$COMPRESS" in
none) mv "$TMPOUT.cpio" "$TMPOUT" ;;
gzip) gzip -n -9 <"$TMPOUT.cpio" >"$TMPOUT" && rm -f "$TMPOUT.cpio" ;;
esac
mv "$TMPOUT" "$OUT/initrd.img"
cp "$KERNEL" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
if [ -n "$KDIR" ]; then
	cp "$KDIR/vmlinux" "$OUT/vmlinux.tmp" && mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
elif extract_vmlinux "$KERNEL" >"$OUT/vmlinux.tmp"; then
	mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
else
	rm -f "$OUT/vmlinux.tmp" "$OUT/vmlinux"
	echo "build.sh: warning: cannot extract a PVH-bootable vmlinux from $KERNEL; use vmlinuz (slower under TCG)" >&2
fi
echo "$REL" >"$OUT/kernel.release"
echo "$AGENT_VERSION" >"$OUT/agent.version"

echo "build.sh: kernel $REL, $(wc -l <"$STAGE/etc/runvirt/modules") modules, initrd.img $(stat -c %s "$OUT/initrd.img") bytes ($COMPRESS) in $OUT" >&2
