#!/usr/bin/env bash
# The in-process `go test -bench` figures of the proxy hot path only. The published
# benchmark (wrk against the real binary with every store, the refresh storm, memory per
# session, logins per second) is bench/run.sh: see docs/benchmarks.md.
#
# Runs Gatehouse's benchmarks and reports each result as a ratio to the baseline measured
# in the same run (the bare httputil.ReverseProxy, or the store's in-memory twin), so the
# figures mean something on any machine.
#
#   scripts/bench.sh                 proxy hot path (in memory and over loopback)
#   COUNT=10 scripts/bench.sh        more runs per benchmark (default 6)
#   BENCH='BenchmarkProxy$' scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-6}
bench=${BENCH:-BenchmarkProxy}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench "$bench" -benchmem -count "$count" -benchtime "${BENCHTIME:-1s}" . | tee "$out" >&2

# Median ns/op, B/op and allocs/op per benchmark, then the ratio to the group's baseline
# (the sub-benchmark named baseline=…).
awk '
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 2; i <= NF; i++) {
    if ($(i+1) == "ns/op") ns[name] = ns[name] " " $i
    if ($(i+1) == "B/op") by[name] = $i
    if ($(i+1) == "allocs/op") al[name] = $i
  }
  if (!(name in seen)) { seen[name] = 1; order[++n] = name }
}
function median(list,   a, k, m, i, j, t) {
  m = split(list, a, " ")
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
  printf "\n%-55s %12s %10s %8s %10s\n", "benchmark (median of runs)", "ns/op", "B/op", "allocs", "vs base"
  for (k = 1; k <= n; k++) {
    name = order[k]; group = name; sub(/\/[^\/]*$/, "", group)
    med[name] = median(ns[name])
    if (name ~ /\/baseline=/) base[group] = med[name]
  }
  for (k = 1; k <= n; k++) {
    name = order[k]; group = name; sub(/\/[^\/]*$/, "", group)
    ratio = (group in base) ? sprintf("%.2fx", med[name] / base[group]) : "-"
    printf "%-55s %12.0f %10s %8s %10s\n", name, med[name], by[name], al[name], ratio
  }
}' "$out"
