#!/bin/sh
# Tells systemd about the unit. The service is neither enabled nor started: it needs a
# configuration and a client secret first (docs/operations.md#systemd).
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
