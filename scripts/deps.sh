#!/usr/bin/env bash
# Installs what Blueprint needs from Debian packages when it is missing:
# ffmpeg (ffmpeg + ffprobe) to run; for the tests also chromium (browser
# tests), etcd-server and postgresql (throwaway servers the lock and ID
# tests start on free ports), dnsutils, unbound and knot (the DNS tests:
# dig as the client, Unbound as the reference resolver, Knot as a secondary).
# Usage: scripts/deps.sh run|test. As root it runs apt-get; otherwise it
# says what to install. Idempotent: does nothing when all is there.
set -euo pipefail
mode=${1:-run}
need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
if [ "$mode" = test ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v dig >/dev/null 2>&1 || need+=(dnsutils)
  command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
  command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || need+=(knot)
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Go is not on PATH. Blueprint needs Go 1.26 or newer (https://go.dev/dl/; /usr/local/go/bin on PATH)." >&2
  exit 1
fi
# Mailpit (a local SMTP server with an API) for the notification tests,
# built from the Go module proxy when it is missing.
if [ "$mode" = test ] && ! command -v mailpit >/dev/null 2>&1; then
  echo "installing mailpit (go install github.com/axllent/mailpit@v1.33.1)…"
  if [ "$(id -u)" = 0 ]; then
    GOBIN=/usr/local/bin go install github.com/axllent/mailpit@v1.33.1
  else
    go install github.com/axllent/mailpit@v1.33.1
    command -v mailpit >/dev/null 2>&1 || { echo "mailpit was installed into $(go env GOPATH)/bin: put that on PATH" >&2; exit 1; }
  fi
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "Blueprint needs: ${need[*]}. Install with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
