#!/usr/bin/env bash
# Installs uv (from PyPI) when missing and syncs the workspace's .venv from uv.lock.
# Serialised with flock so parallel callers do not race on the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.9"
fi
mkdir -p .data
exec flock .data/uv.lock uv sync --all-packages --quiet
