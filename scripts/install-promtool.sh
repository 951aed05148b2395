#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus' metrics linter) is on PATH, for test/integration/metrics.test.ts.
# Debian ships it in the `prometheus` package. Idempotent: exits 0 at once when promtool is present.
# The package's maintainer scripts would start a Prometheus server; a temporary policy-rc.d stops
# that (we want the linter, not a daemon on :9090), unless one is already in place.
set -euo pipefail

log() { printf 'install-promtool: %s\n' "$*"; }

if command -v promtool >/dev/null 2>&1; then
  log "promtool present ($(promtool --version 2>&1 | head -n1))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "ERROR: promtool is missing and apt-get is not available; install Prometheus' promtool by hand" >&2
  exit 1
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { log "ERROR: need root (or sudo) to apt-get install prometheus" >&2; exit 1; }
  SUDO=(sudo)
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  created_policy=1
fi
cleanup() { if [[ $created_policy == 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when an install from the current ones fails (keeps reruns fast).
if ! "${SUDO[@]}" apt-get install -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
  "${SUDO[@]}" apt-get install -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends prometheus
fi

command -v promtool >/dev/null 2>&1 || { log "ERROR: prometheus installed but promtool is not on PATH" >&2; exit 1; }
log "installed $(promtool --version 2>&1 | head -n1)"
