#!/usr/bin/env bash
# Benchmark: one-process split ladder (A, what internal/abr runs) versus one
# ffmpeg process per rung in parallel (B), same encoder settings.
# Usage: bench/abr/run.sh [-rounds N] [-preset P]   (env: KEEP=1 keeps the scratch dir)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in ffmpeg ffprobe go; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/abr-bench.XXXXXX")
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$work"' EXIT; fi
src="$work/src_1080p30_10s.mp4"

echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:   nproc=$(nproc)  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ffmpeg: $(ffmpeg -hide_banner -version | head -n1)"

# 10 s 1080p30 testsrc2 with a sine tone, x264 ultrafast CRF 18 (~20 Mbit/s,
# expensive to decode, like a phone upload).
ffmpeg -hide_banner -nostdin -v error -y \
  -f lavfi -i testsrc2=s=1920x1080:r=30:d=10 -f lavfi -i sine=f=440:d=10 \
  -c:v libx264 -preset ultrafast -crf 18 -pix_fmt yuv420p \
  -c:a aac -b:a 128k -shortest "$src"
echo "source: $(du -h "$src" | cut -f1)"
echo

go build -o "$work/abr-bench" ./bench/abr
"$work/abr-bench" -src "$src" -work "$work" "$@"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
