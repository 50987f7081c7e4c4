#!/usr/bin/env bash
# Runs every Gatehouse test on a fresh machine, installing what the tests need first:
# Debian's redis-server, chromium, prometheus (for promtool), nginx and caddy (the
# forward-auth e2e tests' ingresses), and buildah, rpm and zip (for the release build's test), the npm packages of e2e/ and clients/js, and staticcheck and
# helm (Go modules), then the quick chaos run (bench/chaos.sh --quick, which also needs
# redis-sentinel), on each upstream path. This is the README's test command; CI (.ci/run)
# runs exactly this.
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
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v taskset >/dev/null || missing+=(util-linux)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v promtool >/dev/null || missing+=(prometheus)
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  [[ -x /usr/bin/caddy ]] || missing+=(caddy)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v rpm >/dev/null || missing+=(rpm)
  command -v zip >/dev/null || missing+=(zip)
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  ((${#missing[@]})) || return 0
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # Debian's chromium package sometimes fails once with "rename failed … partial"; retry.
  for attempt in 1 2 3; do
    if as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      stop_package_services "${missing[@]}"
      return 0
    fi
    echo "apt-get install failed (attempt $attempt), retrying" >&2
    sleep 3
  done
  echo "could not install ${missing[*]}" >&2
  exit 1
}

# The tests need only promtool, nginx and caddy as programs, which they run themselves;
# on a machine run by systemd, Debian's prometheus, nginx and caddy packages also start a
# server (Prometheus on :9090, the admin listener's default port; nginx and Caddy on :80).
# Stop and disable those this script just installed.
stop_package_services() {
  [[ -d /run/systemd/system ]] || return 0
  local pkg
  for pkg in prometheus nginx caddy; do
    [[ " $* " == *" $pkg "* ]] || continue
    if systemctl is-enabled --quiet "$pkg" 2>/dev/null; then
      echo "stopping the $pkg service the package started (the tests run their own)" >&2
      as_root systemctl disable --now "$pkg" >/dev/null 2>&1 || true
    fi
  done
}

# Helm is a Go module: built once into the cache directory, then reused, also by the
# chart's Go test (deploy/helm, through HELM; without it, that test builds its own).
helm_version=v3.22.0
helm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse/helm-$helm_version"
[[ -x "$helm_dir/helm" ]] && export HELM="$helm_dir/helm"

step "static checks: gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags release ./internal/releasetest
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags release ./internal/releasetest

if $quick; then
  command -v redis-server >/dev/null || { echo "the Redis store's tests need redis-server: run scripts/test.sh once, or apt-get install -y redis-server" >&2; exit 1; }
  step "unit tests (-race)"
  go test -race $(go list ./... | grep -v /e2e)
  exit 0
fi

install_packages

step "Prometheus files: promtool check config, check rules, test rules (deploy/)"
promtool check config deploy/prometheus-scrape.yml
promtool check rules deploy/prometheus-alerts.yml
promtool test rules deploy/prometheus-alerts.test.yml

step "Helm chart: helm lint and helm template (deploy/helm/gatehouse), default and ci/ values"
if [[ ! -x "$helm_dir/helm" ]]; then
  mkdir -p "$helm_dir"
  GOBIN="$helm_dir" go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi
export HELM="$helm_dir/helm"
for values in "" deploy/helm/gatehouse/ci/*.yaml; do
  "$HELM" lint --strict deploy/helm/gatehouse ${values:+-f "$values"}
  "$HELM" template gatehouse deploy/helm/gatehouse ${values:+-f "$values"} >/dev/null
done

step "npm ci (e2e, clients/js)"
npm ci --prefix e2e --no-audit --no-fund --loglevel=error
npm ci --prefix clients/js --no-audit --no-fund --loglevel=error

step "unit and integration tests (-race)"
go test -race -timeout 15m $(go list ./... | grep -v /e2e)

step "release: scripts/release.sh twice, byte-identical; the .deb, .rpm and image install and run"
go test -tags release -count=1 -timeout 20m -v ./internal/releasetest

step "fuzzing: every fuzz target for a few seconds (scripts/fuzz.sh)"
FUZZTIME=${FUZZTIME:-4s} scripts/fuzz.sh

step "JavaScript client tests"
npm test --prefix clients/js

step "end-to-end tests: gatehouse binary (built with -race) against oidc-provider, Redis and Chromium"
GATEHOUSE_E2E_RACE=1 go test -race -p 1 -timeout 20m ./e2e/...

step "end-to-end tests on the standard upstream path: the security suite and the proxy tests with upstream_transport: standard (~2 min)"
# The pass above ran on the default path (fast). GATEHOUSE_E2E_UPSTREAM_TRANSPORT puts
# upstream_transport: standard into every gatehouse config that chooses no path itself;
# only the tests that exercise the proxy run again.
GATEHOUSE_E2E_UPSTREAM_TRANSPORT=standard GATEHOUSE_E2E_RACE=1 go test -race -p 1 -count=1 -timeout 20m \
  -run '^(TestSecurity|TestSecurityProviderBusy|TestE2ERoutes|TestE2ERefreshAndBurst|TestE2ERefreshFailures|TestE2ESessionEndClosesWebSocketsOnEveryReplica)$' ./e2e/

step "chaos run, quick: 3 replicas on Redis Sentinel under load and faults (bench/chaos.sh --quick, ~3 min)"
# Exits non-zero when a session is lost, a refresh token used twice, a token leaks or an
# error is one no fault explains (docs/reliability.md); the report goes to the log only.
bench/chaos.sh --quick --out ''

step "chaos run, quick, on the standard upstream path (bench/chaos.sh --quick --upstream-transport standard, ~3 min)"
bench/chaos.sh --quick --out '' --upstream-transport standard

step "all tests passed"
