#!/usr/bin/env bash
# Installs node_modules with `npm ci` when they are missing or older than package-lock.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp ]]; then
  echo "deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
