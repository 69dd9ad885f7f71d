#!/usr/bin/env bash
# Installs the `oha` HTTP load generator (Rust, from crates.io, pinned) into the project's
# data dir and prints its path. The profile benchmark drives its open-loop, fixed-rate runs
# with it: a Python load generator on the same 2 cores took as much CPU as the server it
# measured. Idempotent: a build that is already there is reused. Needs cargo (rustup).
set -euo pipefail
source "$(dirname "$0")/common.sh"
OHA_VERSION=${CXM_OHA_VERSION:-1.16.0}
TOOLS_DIR=${CXM_TOOLS_DIR:-$DATA_DIR/tools}
OHA_ROOT=$TOOLS_DIR/oha-$OHA_VERSION
OHA_BIN=$OHA_ROOT/bin/oha
if [ ! -x "$OHA_BIN" ]; then
  command -v cargo >/dev/null || die "cargo is needed to build oha (install Rust with rustup)"
  log "building oha $OHA_VERSION from crates.io into $OHA_ROOT (a few minutes, once)"
  # The build directory is kept, so an interrupted build resumes where it stopped.
  nice -n 10 cargo install oha --locked --version "$OHA_VERSION" --root "$OHA_ROOT" \
    --target-dir "$TOOLS_DIR/oha-target" --quiet >&2
fi
"$OHA_BIN" --version >/dev/null
echo "$OHA_BIN"
