#!/usr/bin/env bash
# Runs every fuzz target in the repository (every func FuzzXxx(f *testing.F) in a
# _test.go file) for a while each, one `go test -fuzz` per target since that is all one
# invocation can do, and prints the executions of each target and the total. Fails if
# any target fails; the failing input is then in <package>/testdata/fuzz/<FuzzXxx>/.
#
#   scripts/fuzz.sh                      10 s per target
#   FUZZTIME=1m scripts/fuzz.sh          longer (any go test -fuzztime value, such as 5000x)
#   scripts/fuzz.sh FuzzLogoutToken      only the targets whose name matches (grep -E)
#
# FUZZMINIMIZETIME (default 2s) bounds the minimisation of each new input, so a short
# run spends its time fuzzing. The seed corpora also run with the unit tests.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded" when
# -fuzztime ends while a worker is mid-call (go.dev/issue/75804, fixed in Go 1.27). Such
# a run wrote no failing input; it is run once more, and counted as a failure only if
# it fails again or any run writes a new input to testdata/fuzz/<FuzzXxx>/.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-10s}
minimizetime=${FUZZMINIMIZETIME:-2s}
only=${1:-.}

# package directory <TAB> target, for every fuzz target outside node_modules.
targets=$(grep -rE --include='*_test.go' --exclude-dir=node_modules --exclude-dir=testdata \
  '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
  sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1\t\2|; s|^\./[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|.\t\1|' |
  sort -u | awk -F'\t' -v only="$only" '$2 ~ only')
if [[ -z "$targets" ]]; then
  echo "fuzz.sh: no fuzz target matches $only" >&2
  exit 1
fi

total=0
failed=()
summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS=$'\t' read -r dir target; do
  pkg=./$dir
  [[ $dir == . ]] && pkg=.
  printf '%-28s %-26s ' "$target" "$pkg"
  start=$SECONDS
  corpus="$dir/testdata/fuzz/$target"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  status=FAIL
  for try in 1 2; do
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$pkg" >"$log" 2>&1; then
      status=ok
      break
    fi
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    # The coordinator race: the only reason given is the deadline, and no input was kept.
    if [[ $try == 1 && $after == "$before" ]] &&
      grep -qx '    context deadline exceeded' "$log" &&
      ! grep -qE '^\s+(--- FAIL: '"$target"'/|.*_test\.go:[0-9]+:)' "$log"; then
      echo -n "(coordinator deadline race, again) " >&2
      continue
    fi
    break
  done
  if [[ $status == FAIL ]]; then
    failed+=("$target ($pkg)")
  fi
  # The last progress line holds the executions so far: "fuzz: elapsed: 10s, execs: 123 (…".
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' "$log" | tail -n 1)
  execs=${execs:-0}
  total=$((total + execs))
  printf '%4s %12s execs %4ss\n' "$status" "$execs" "$((SECONDS - start))"
  summary+=("$target $execs")
  if [[ $status == FAIL ]]; then
    sed 's/^/    /' "$log" >&2
  fi
done <<<"$targets"

printf '%-28s %-26s %4s %12s execs\n' "total" "" "" "$total"
if ((${#failed[@]})); then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
