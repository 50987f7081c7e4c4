#!/usr/bin/env bash
# Gatehouse's chaos run, in one command (see docs/reliability.md):
#
#   bench/chaos.sh            10 minutes of workload; rewrites the results section of docs/reliability.md
#   bench/chaos.sh --quick    about 2.5 minutes (a compressed schedule)
#   bench/chaos.sh --duration 20m --users 100 --keep   (any flag of `bench chaos`: go run ./bench chaos -h)
#
# On loopback only: three gatehouse replicas behind a round-robin balancer, Redis with a
# replica and three sentinels, oidc-provider, an upstream, a fault proxy in front of each
# dependency; a mixed workload while faults are injected one at a time, then overlapping.
# Exits non-zero when a check fails. It installs what is missing first: redis-server,
# redis-sentinel with apt, e2e's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v taskset >/dev/null || missing+=(util-linux)
command -v node >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "== apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f e2e/node_modules/oidc-provider/package.json ]]; then
  echo "== npm ci --prefix e2e (oidc-provider)" >&2
  npm ci --prefix e2e --no-audit --no-fund --loglevel=error
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/bench" ./bench
"$work/bench" chaos "$@"
