#!/usr/bin/env bash
# Runs every Gatehouse test on a fresh machine, installing what the tests need first:
# Debian's redis-server and chromium, the npm packages of e2e/ and clients/js, and
# staticcheck. This is the README's test command; CI (.ci/run) runs exactly this.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    static checks and unit tests only (no installs, no e2e)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  ((${#missing[@]})) || return 0
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # Debian's chromium package sometimes fails once with "rename failed … partial"; retry.
  for attempt in 1 2 3; do
    if as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      return 0
    fi
    echo "apt-get install failed (attempt $attempt), retrying" >&2
    sleep 3
  done
  echo "could not install ${missing[*]}" >&2
  exit 1
}

step "static checks: gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

if $quick; then
  command -v redis-server >/dev/null || { echo "the Redis store's tests need redis-server: run scripts/test.sh once, or apt-get install -y redis-server" >&2; exit 1; }
  step "unit tests (-race)"
  go test -race $(go list ./... | grep -v /e2e)
  exit 0
fi

install_packages

step "npm ci (e2e, clients/js)"
npm ci --prefix e2e --no-audit --no-fund --loglevel=error
npm ci --prefix clients/js --no-audit --no-fund --loglevel=error

step "unit and integration tests (-race)"
go test -race -timeout 15m $(go list ./... | grep -v /e2e)

step "fuzzing: every fuzz target for a few seconds (scripts/fuzz.sh)"
FUZZTIME=${FUZZTIME:-4s} scripts/fuzz.sh

step "JavaScript client tests"
npm test --prefix clients/js

step "end-to-end tests: gatehouse binary (built with -race) against oidc-provider, Redis and Chromium"
GATEHOUSE_E2E_RACE=1 go test -race -p 1 -timeout 20m ./e2e/...

step "all tests passed"
