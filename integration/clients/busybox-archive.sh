#!/usr/bin/env bash
# busybox-archive.sh IMAGE OUT.tar — build a busybox image as a
# docker-archive tarball tagged IMAGE (for `docker load` / `podman load`),
# from a rootfs made by ../busybox-rootfs.sh. No registry needed.
set -euo pipefail
image=${1:?usage: busybox-archive.sh IMAGE OUT.tar}
out=${2:?usage: busybox-archive.sh IMAGE OUT.tar}
work=$(mktemp -d /tmp/runvirt-archive.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$work/archive"
"$(dirname "$0")/../busybox-rootfs.sh" "$rootfs"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/layer.tar" .
layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir "$work/archive/$layer"
mv "$work/layer.tar" "$work/archive/$layer/layer.tar"
cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]}}
JSON
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/archive/$config.json"
cat >"$work/archive/manifest.json" <<JSON
[{"Config":"$config.json","RepoTags":["$image"],"Layers":["$layer/layer.tar"]}]
JSON
tar -C "$work/archive" -cf "$out" .
