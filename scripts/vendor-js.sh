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
