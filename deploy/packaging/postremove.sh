#!/bin/sh
# Tells systemd the unit is gone. The gatehouse user, /etc/gatehouse (on remove) and the
# sessions in /var/lib/gatehouse stay: removing users and data is the operator's call.
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
