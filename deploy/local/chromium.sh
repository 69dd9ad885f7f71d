#!/usr/bin/env bash
# Installs Debian's chromium (used headless by the alerting console test through Playwright;
# Playwright's own browser download does not work here). Idempotent: does nothing when
# /usr/bin/chromium already exists.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x /usr/bin/chromium
echo "[chromium] installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)" >&2
