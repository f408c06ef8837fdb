#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test (tests/gateway/test_dashboard.py): Debian's
# `chromium` package, installed with apt-get when missing and we are root. Prints the binary's path.
set -euo pipefail
found=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$found" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "chromium is not installed; as root: apt-get install chromium (Debian/Ubuntu)" >&2
    exit 1
  fi
  echo "installing Debian's chromium (apt-get) for the dashboard's browser test" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  found=$(command -v chromium)
fi
echo "$found"
