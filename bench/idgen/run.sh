#!/usr/bin/env bash
# Benchmark: Blueprint's ID generator next to bwmarrin/snowflake, sonyflake
# and google/uuid NewV7 in one run. Prints the raw `go test -bench` output,
# then a table of medians with the ratio to bwmarrin at the same -cpu.
# Usage: bench/idgen/run.sh [-count N] [-benchtime T]   (defaults: 5, 1s)
set -euo pipefail
cd "$(dirname "$0")/../.."

count=5 benchtime=1s
while [[ $# -gt 0 ]]; do
  case "$1" in
    -count) count=$2; shift 2 ;;
    -benchtime) benchtime=$2; shift 2 ;;
    *) echo "usage: $0 [-count N] [-benchtime T]" >&2; exit 2 ;;
  esac
done
command -v go >/dev/null || { echo "run.sh: go not found" >&2; exit 1; }

out=$(mktemp "${TMPDIR:-/tmp}/idgen-bench.XXXXXX")
trap 'rm -f "$out"' EXIT
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:   nproc=$(nproc)  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "go:     $(go version)"
echo
go test -run '^$' -bench . -benchtime "$benchtime" -count "$count" -cpu 1,2 ./bench/idgen | tee "$out"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# Medians per sub-benchmark and -cpu; ratio of IDs/s to bwmarrin's.
awk '
function median(s,    a, n, i, j, t) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^BenchmarkIDs\// {
  name = $1; sub(/^BenchmarkIDs\//, "", name)
  cpu = 1; if (match(name, /-[0-9]+$/)) { cpu = substr(name, RSTART + 1); name = substr(name, 1, RSTART - 1) }
  key = name SUBSEP cpu
  if (!(key in seen)) { seen[key] = 1; order[++k] = key }
  for (i = 3; i < NF; i++) {
    if ($(i + 1) == "ns/op") ns[key] = ns[key] " " $i
    if ($(i + 1) == "IDs/s") ids[key] = ids[key] " " $i
    if ($(i + 1) == "limit-share") share[key] = share[key] " " $i
  }
}
END {
  printf "| generator | -cpu | ns/op | IDs/s | share of its layout limit | IDs/s ÷ bwmarrin |\n|---|---|---|---|---|---|\n"
  for (i = 1; i <= k; i++) {
    split(order[i], p, SUBSEP)
    r = ids[p[1] SUBSEP p[2]]; b = ids["bwmarrin" SUBSEP p[2]]
    sh = (order[i] in share) ? sprintf("%.3f", median(share[order[i]])) : "—"
    printf "| %s | %s | %.1f | %.0f | %s | %.2f× |\n", p[1], p[2], median(ns[order[i]]), median(r), sh, median(r) / median(b)
  }
}' "$out"
