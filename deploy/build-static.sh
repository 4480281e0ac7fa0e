#!/bin/sh
# Builds the production binaries exactly as the container image does (the
# Dockerfile runs this script; so does CI): static (CGO_ENABLED=0),
# stripped, version-stamped. Neither links the Temporal server or Web UI.
#   deploy/build-static.sh OUTDIR [VERSION]
set -eu
out=${1:?usage: deploy/build-static.sh OUTDIR [VERSION]}
version=${2:-${RELINK_VERSION:-}}
if [ -z "$version" ]; then
  version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
mkdir -p "$out"
# relink is ./starter/relink (the gateway and CLI), relink-worker is ./worker/relink-worker.
for bin in relink:starter/relink relink-worker:worker/relink-worker; do
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/relink-dev/relink/version.Version=$version" \
    -o "$out/${bin%%:*}" "./${bin#*:}"
done
echo "built $out/relink and $out/relink-worker ($version)"
