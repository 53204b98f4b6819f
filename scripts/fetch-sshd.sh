#!/usr/bin/env bash
# Debian's OpenSSH server, unpacked (no root, nothing installed) for the remote-bench tests' loopback server.
set -euo pipefail
DEST=${XDG_CACHE_HOME:-$HOME/.cache}/edgeres/openssh-server
[ -x /usr/sbin/sshd ] && exit 0
[ -x "$DEST/usr/sbin/sshd" ] && exit 0
command -v apt-get >/dev/null || { echo "fetch-sshd: no apt-get; the remote tests will skip" >&2; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
get() { (cd "$tmp" && apt-get download openssh-server libwrap0 >/dev/null 2>&1); }
if ! get; then  # no package lists yet on a fresh machine
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
  get || { echo "fetch-sshd: apt-get download failed; the remote tests will skip" >&2; exit 0; }
fi
mkdir -p "$DEST.part"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$DEST.part"; done
rm -rf "$DEST" && mv "$DEST.part" "$DEST"
echo "fetch-sshd: openssh-server unpacked into $DEST" >&2
