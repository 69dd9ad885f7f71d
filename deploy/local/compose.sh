#!/usr/bin/env bash
# Makes `docker compose` available for checking docker-compose.yml (`docker compose config`)
# on machines whose Docker client has no compose plugin: builds the pinned Docker Compose
# release from the Go module proxy into ~/.docker/cli-plugins (once; about 2 minutes).
# `go install pkg@version` refuses this module (its go.mod has exclude directives), so it is
# built inside its downloaded module directory instead.
set -euo pipefail
source "$(dirname "$0")/common.sh"
COMPOSE_VERSION=v2.40.3
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

if docker compose version >/dev/null 2>&1; then exit 0; fi
command -v docker >/dev/null || die "the docker client is missing (apt-get install docker.io)"
command -v go >/dev/null || die "go is needed once to build the docker compose plugin"
log "building docker compose $COMPOSE_VERSION from the Go module proxy (once)"
mod_dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$PLUGIN_DIR"
(cd "$mod_dir" && go build -trimpath \
   -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
   -o "$PLUGIN_DIR/docker-compose" ./cmd) >"$LOG_DIR/compose-build.log" 2>&1 \
  || { tail_log "$LOG_DIR/compose-build.log"; die "building docker compose failed"; }
docker compose version >&2
