#!/usr/bin/env bash
# Gatehouse's benchmark, in one command (see docs/benchmarks.md):
#
#   bench/run.sh            about 10 minutes; rewrites the results section of docs/benchmarks.md
#   bench/run.sh --quick    about 2 minutes
#   bench/run.sh --skip logins,gobench --keep     (any flag of `bench run`: go run ./bench run -h)
#   bench/run.sh --quick --peers nginx            only some peers (--peers none: no peer)
#
# On loopback only: it starts an upstream, a bare httputil.ReverseProxy and a gatehouse per
# session store, measures them with wrk in alternating rounds, then the refresh storm,
# memory per session, logins per second against oidc-provider and `go test -bench`.
# It installs what is missing first: wrk, redis-server and the peers' packages (nginx,
# apache2, libapache2-mod-auth-openidc; only for the peers selected with --peers) with
# apt, strace (for the system calls per request), e2e's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v taskset >/dev/null || missing+=(util-linux)

# The peers measured beside gatehouse (bench/peers.go): --peers as `bench run` reads it.
peers=nginx,modauth-shm,modauth-redis
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --peers=* | -peers=*) peers=${args[i]#*=} ;;
    --peers | -peers) peers=${args[i + 1]:-} ;;
  esac
done
if [[ "$*" != *syscalls* && "$*" != *proxy* ]]; then
  [[ -x /usr/bin/strace ]] || missing+=(strace)
fi
if [[ ,$peers, == *,nginx* ]]; then
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
fi
if [[ ,$peers, == *,modauth-* ]]; then
  [[ -x /usr/sbin/apache2 ]] || missing+=(apache2)
  [[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ]] || missing+=(libapache2-mod-auth-openidc)
fi
if ((${#missing[@]})); then
  echo "== apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "$*" != *logins* && ! -f e2e/node_modules/oidc-provider/package.json ]]; then
  echo "== npm ci --prefix e2e (oidc-provider, for logins per second)" >&2
  npm ci --prefix e2e --no-audit --no-fund --loglevel=error
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/bench" ./bench
"$work/bench" run "$@"
