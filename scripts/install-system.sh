#!/usr/bin/env bash
# Installs the system parts of the local stack from Debian and npm (idempotent; skips what is present).
# Docker Engine + CNCF registry + skopeo + debootstrap (stage 3), PostgreSQL client bits are already on the image,
# Node's azurite (stage 4), headless chromium (the Prefect UI DOM test). Needs root (as on CI and the dev machines).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # headless, for the Prefect UI DOM test (tests/flows/test_review.py)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x "$here/.cache/node/node_modules/.bin/azurite-blob" ]; then
  echo "installing azurite (npm)"
  mkdir -p "$here/.cache/node"
  (cd "$here/.cache/node" && npm install --silent --no-audit --no-fund --prefix . azurite@3.35.0 >/dev/null)
fi
echo "system parts ready"
