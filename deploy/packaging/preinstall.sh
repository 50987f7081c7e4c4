#!/bin/sh
# Creates the system user and group gatehouse, which the service runs as: the unit's
# DynamicUser=yes uses a static user of the unit's name when there is one, and the state
# directory is owned by it.
#
# DPKG_ROOT (dpkg --root with --force-script-chrootless) installs into another root without
# a chroot; the tests use it, for the .rpm's scriptlets too.
set -e
root=${DPKG_ROOT:-}
if [ -n "$root" ]; then
  prefix="--prefix $root"
else
  prefix=""
fi
if ! grep -q '^gatehouse:' "$root/etc/group" 2>/dev/null; then
  # shellcheck disable=SC2086
  groupadd $prefix --system gatehouse
fi
if ! grep -q '^gatehouse:' "$root/etc/passwd" 2>/dev/null; then
  nologin=/usr/sbin/nologin
  [ -x "$root$nologin" ] || nologin=/sbin/nologin
  # shellcheck disable=SC2086
  useradd $prefix --system --gid gatehouse --no-create-home --home-dir /var/lib/gatehouse \
    --shell "$nologin" --comment "Gatehouse authentication gateway" gatehouse
fi
