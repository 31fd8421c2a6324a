#!/usr/bin/env bash
# Benchmark: payments/s through Blueprint's full payment path (HTTP API,
# idempotency key, test provider, durable ledger write) next to the floor
# (one transaction with a payment row and its two balanced ledger entries)
# on the same engine, for SQLite (synchronous NORMAL and FULL) and a
# throwaway PostgreSQL (fsync on). Prints the raw `go test -bench` output,
# then medians and the ratio blueprint ÷ floor per engine.
# Usage: bench/payments/run.sh [-count N] [-benchtime T]   (defaults: 3, 3s)
set -euo pipefail
cd "$(dirname "$0")/../.."

count=3 benchtime=3s
while [[ $# -gt 0 ]]; do
  case "$1" in
    -count) count=$2; shift 2 ;;
    -benchtime) benchtime=$2; shift 2 ;;
    *) echo "usage: $0 [-count N] [-benchtime T]" >&2; exit 2 ;;
  esac
done
command -v go >/dev/null || { echo "run.sh: go not found" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:   nproc=$(nproc)  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "go:     $(go version)"
echo
go test -run '^$' -bench . -benchtime "$benchtime" -count "$count" ./bench/payments | tee "$out"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

awk '
function median(s,    a, n, i, j, t) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^BenchmarkPayments\// {
  name = $1; sub(/^BenchmarkPayments\//, "", name); sub(/-[0-9]+$/, "", name)
  split(name, p, "/"); eng = p[1]; path = p[2]
  if (!(eng in seen)) { seen[eng] = 1; order[++k] = eng }
  for (i = 3; i < NF; i++) {
    if ($(i + 1) == "payments/s") ps[eng, path] = ps[eng, path] " " $i
    if ($(i + 1) == "p50-ms") p50[eng, path] = p50[eng, path] " " $i
    if ($(i + 1) == "p99-ms") p99[eng, path] = p99[eng, path] " " $i
  }
}
END {
  printf "| engine | blueprint payments/s | p50 / p99 ms | floor payments/s | p50 / p99 ms | blueprint ÷ floor |\n|---|---|---|---|---|---|\n"
  for (i = 1; i <= k; i++) {
    e = order[i]; b = median(ps[e, "blueprint"]); f = median(ps[e, "floor"])
    printf "| %s | %.0f | %.1f / %.1f | %.0f | %.1f / %.1f | %.2f× |\n", e, b, median(p50[e, "blueprint"]), median(p99[e, "blueprint"]),
      f, median(p50[e, "floor"]), median(p99[e, "floor"]), b / f
  }
}' "$out"
