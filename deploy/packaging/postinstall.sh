#!/bin/sh
# Gives the state directory to the gatehouse user (by number, read from the target's
# /etc/passwd: under DPKG_ROOT the host's user database is not the target's), then tells
# systemd about the unit. The service is neither enabled nor started: it needs a
# configuration and a client secret first (docs/operations.md#systemd).
set -e
root=${DPKG_ROOT:-}
ids=$(awk -F: '$1 == "gatehouse" { print $3 ":" $4 }' "$root/etc/passwd")
[ -n "$ids" ] || { echo "gatehouse: no gatehouse user in $root/etc/passwd" >&2; exit 1; }
chown "$ids" "$root/var/lib/gatehouse"
chmod 0700 "$root/var/lib/gatehouse"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
