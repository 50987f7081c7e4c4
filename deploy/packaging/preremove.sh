#!/bin/sh
# Stops and disables the service when the package is removed (deb: "remove"; rpm: $1 is
# 0). An upgrade leaves it running the old binary: systemctl restart gatehouse runs the new.
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  case "${1:-}" in
    remove|0) systemctl disable --now gatehouse.service >/dev/null 2>&1 || true ;;
  esac
fi
