#!/usr/bin/env bash
# Re-vendors the browser libraries the web UI embeds, at pinned versions,
# from the npm registry. `go build` never runs this: the files are committed.
set -euo pipefail
HLS_VERSION=1.6.15
TUS_VERSION=4.3.1
dest="$(cd "$(dirname "$0")/.." && pwd)/internal/web/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "hls.js@$HLS_VERSION" "tus-js-client@$TUS_VERSION" >/dev/null
mkdir hls tus
tar -xzf "hls.js-$HLS_VERSION.tgz" -C hls
tar -xzf "tus-js-client-$TUS_VERSION.tgz" -C tus
mkdir -p "$dest"
cp hls/package/dist/hls.min.js "$dest/hls.min.js"
cp hls/package/LICENSE "$dest/hls.LICENSE"
cp tus/package/dist/tus.min.js "$dest/tus.min.js"
cp tus/package/LICENSE "$dest/tus.LICENSE"
{
  echo "# Vendored browser libraries (scripts/vendor-js.sh)"
  echo
  echo "| file | package | version | sha256 |"
  echo "|---|---|---|---|"
  echo "| hls.min.js | hls.js | $HLS_VERSION | $(sha256sum "$dest/hls.min.js" | cut -c1-16) |"
  echo "| tus.min.js | tus-js-client | $TUS_VERSION | $(sha256sum "$dest/tus.min.js" | cut -c1-16) |"
} > "$dest/VERSIONS.md"
echo "vendored into $dest"

# uPlot, the chart library of the creator dashboard (/studio) and the
# operator analytics page. Pinned; to update, change UPLOT_VERSION, rerun
# this script, check the charts on /studio, and commit the new files.
UPLOT_VERSION=1.6.32
uplot_dest="$dest/uplot"
uplot_tmp=$(mktemp -d)
(
  cd "$uplot_tmp"
  npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null
  tar -xzf "uplot-$UPLOT_VERSION.tgz"
)
mkdir -p "$uplot_dest"
cp "$uplot_tmp/package/dist/uPlot.iife.min.js" "$uplot_dest/uPlot.iife.min.js"
cp "$uplot_tmp/package/dist/uPlot.min.css" "$uplot_dest/uPlot.min.css"
cp "$uplot_tmp/package/LICENSE" "$uplot_dest/LICENSE"
{
  echo "# uPlot (scripts/vendor-js.sh)"
  echo
  echo "| file | package | version | sha256 |"
  echo "|---|---|---|---|"
  echo "| uPlot.iife.min.js | uplot | $UPLOT_VERSION | $(sha256sum "$uplot_dest/uPlot.iife.min.js" | cut -c1-16) |"
  echo "| uPlot.min.css | uplot | $UPLOT_VERSION | $(sha256sum "$uplot_dest/uPlot.min.css" | cut -c1-16) |"
} > "$uplot_dest/VERSION.md"
rm -rf "$uplot_tmp"
echo "vendored uPlot $UPLOT_VERSION into $uplot_dest"
