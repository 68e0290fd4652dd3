#!/usr/bin/env bash
# busybox-rootfs.sh DIR — make DIR a complete root filesystem from the static
# busybox (busybox-static): every applet, /etc/passwd and /etc/group with
# root and user (1000), and the usual empty directories. No registry needed.
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
[ -x /bin/busybox ] || { echo "busybox-rootfs.sh: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,tmp,proc,sys,dev,root,home/user}
chmod 1777 "$dir/tmp"
cp /bin/busybox "$dir/bin/busybox"
for app in $(/bin/busybox --list); do
	[ "$app" = busybox ] || ln -sf busybox "$dir/bin/$app"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' >"$dir/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$dir/etc/group"
