#!/usr/bin/env bash
# KnowledgeTree with Docker Compose (docker-compose.prod.yml; docs/DEPLOYMENT.md,
# "With Docker Compose").
#
#   scripts/compose.sh up       build the release and the images, start everything, wait
#                               until the app and nginx are healthy
#   scripts/compose.sh update   build the new release's images, migrate, start the new app
#                               container beside the old one, switch nginx to it once it
#                               is healthy, stop the old one (draining its streams), then
#                               publish the browser app (nginx is not restarted); nothing
#                               happens to a container that runs the release already
#   scripts/compose.sh down     stop and remove the containers (the volumes stay)
#   scripts/compose.sh ps|logs  what docker-compose shows
#   scripts/compose.sh knowledgetree ARGS...
#                               the app's command in the running app container
#                               (create-admin, ingest, reindex...)
#
# KT_COMPOSE_ENV: the env file (default compose/knowledgetree.env, mode 0600).
# KT_COMPOSE_PROJECT: the compose project name (default knowledgetree).
# KT_COMPOSE_FILES: compose files, colon-separated (default docker-compose.prod.yml).
# KT_COMPOSE_RELEASE: a release folder built before (build/releases/NAME) instead of
# building the working tree's (e.g. back to the previous release).
# KT_BASE_IMAGE=knowledgetree/debian:trixie: the base image made from the test hosts'
# root filesystem (scripts/testhost.sh rootfs) where no registry is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
env_file=${KT_COMPOSE_ENV:-$repo/compose/knowledgetree.env}
project=${KT_COMPOSE_PROJECT:-knowledgetree}
IFS=: read -r -a compose_files <<<"${KT_COMPOSE_FILES:-docker-compose.prod.yml}"
stage=$repo/build/compose/release
LOCAL_BASE=knowledgetree/debian:trixie
TESTHOST_STATE=${KT_TESTHOST_STATE:-/var/lib/knowledgetree-testhost}

log() { echo "compose: $*" >&2; }
die() { echo "compose: $*" >&2; exit 1; }

compose() {
  local files=() f
  for f in "${compose_files[@]}"; do files+=(--file "$f"); done
  # COMPOSE_DOCKER_CLI_BUILD=0: compose's own builder, whatever `docker` CLI is first in PATH.
  COMPOSE_DOCKER_CLI_BUILD=0 docker-compose --project-name "$project" --project-directory "$repo" \
    --env-file "$env_file" "${files[@]}" "$@"
}

check_env_file() {
  [[ -f $env_file ]] || die "$env_file is missing: install -m 0600 compose/knowledgetree.env.example $env_file, then fill it in"
  local mode
  mode=$(stat -c %a "$env_file")
  [[ $mode == 600 || $mode == 400 ]] || die "$env_file holds secrets but has mode $mode: chmod 600 $env_file"
  local name
  for name in KT_DOMAIN SECRET_KEY KT_DB_OWNER_PASSWORD KT_DB_APP_PASSWORD; do
    grep -Eq "^$name=.+" "$env_file" || die "$env_file: $name is empty or missing"
  done
}

# The Debian 13 base without a registry: the test hosts' cached root filesystem.
ensure_base() {
  local base
  base=$(sed -n 's/^KT_BASE_IMAGE=//p' "$env_file" | tail -n1)
  base=${KT_BASE_IMAGE:-${base:-debian:trixie}}  # the environment wins, as in compose
  [[ $base == "$LOCAL_BASE" ]] || return 0
  docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && return 0
  log "importing $LOCAL_BASE from $TESTHOST_STATE/rootfs-trixie.tar.zst"
  [[ -f $TESTHOST_STATE/rootfs-trixie.tar.zst ]] || "$repo/scripts/testhost.sh" rootfs
  local copy
  copy=$(mktemp)
  # testhost.sh rewrites the tarball under this lock.
  flock "$TESTHOST_STATE/.lock" cp "$TESTHOST_STATE/rootfs-trixie.tar.zst" "$copy"
  zstd -q -dc "$copy" | docker import - "$LOCAL_BASE" >/dev/null
  rm -f "$copy"
}

# The release (scripts/build_release.sh's, or KT_COMPOSE_RELEASE), copied into the build
# context (.dockerignore lets only this folder of build/ in; build/release is a symlink
# docker cannot follow).
stage_release() {
  local release=${KT_COMPOSE_RELEASE:-}
  if [[ -n $release ]]; then
    [[ -f $release/RELEASE ]] || die "KT_COMPOSE_RELEASE=$release is not a release folder of scripts/build_release.sh"
  else
    release=$("$repo/scripts/build_release.sh")
  fi
  [[ -d $release/dist ]] || die "$release has no dist/ (the frontend): install Node.js 20 and build again"
  mkdir -p "$repo/build/compose"
  exec 8>>"$repo/build/compose/.lock"
  flock 8
  rm -rf "$stage.new"
  cp -a "$release/." "$stage.new"
  rm -rf "$stage"
  mv "$stage.new" "$stage"
  log "release $(cat "$stage/RELEASE")"
  # The host's local CAs (as scripts/testhost.sh gives its guests): an intercepting proxy.
  rm -rf "$repo/build/compose/ca-certificates"
  mkdir -p "$repo/build/compose/ca-certificates"
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -type f \
    -exec cp {} "$repo/build/compose/ca-certificates/" \; 2>/dev/null || true
}

build() {
  ensure_base
  stage_release
  compose build --quiet db app nginx certbot >&2
}

# Wait until every container of a service reports healthy.
wait_healthy() {  # service seconds
  local service=$1 deadline=$((SECONDS + $2)) id status all
  while :; do
    all=healthy
    for id in $(compose ps -q "$service"); do
      status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
      [[ $status == healthy ]] || all=$status
    done
    [[ $all == healthy ]] && return 0
    ((SECONDS < deadline)) || die "$service is $all after $2 s: scripts/compose.sh logs $service"
    sleep 2
  done
}

cmd_up() {
  check_env_file
  build
  compose up --detach --remove-orphans >&2
  wait_healthy app 600
  wait_healthy nginx 120
  log "up: https://$(sed -n 's/^KT_DOMAIN=//p' "$env_file" | tail -n1)/ (HTTPS once certbot has the certificate)"
}

# Point nginx at one app container (a name on the compose network), and wait until no nginx worker of the old configuration takes requests
# (compose/nginx/switch-app.sh). `docker exec`: docker-compose's own start takes seconds.
nginx_to() {
  [[ -n ${nginx_id:-} ]] || nginx_id=$(compose ps -q nginx)
  [[ -n $nginx_id ]] || die "no nginx container"
  # An nginx image from before switch-app.sh resolves `app` to every app container.
  docker exec "$nginx_id" sh -c 'if [ -x /opt/knowledgetree-nginx/switch-app.sh ]; then
      exec /opt/knowledgetree-nginx/switch-app.sh "$1"; else exec nginx -s reload; fi' \
    switch "$1" >&2
}

# The browser app into the web volume, switched in one rename: nginx keeps running.
publish_frontend() {
  compose run --rm --no-deps frontend >&2
}

# The new app container beside the old ones; once it is healthy nginx sends to it alone,
# then the old ones get SIGTERM: they take no new work and finish their open requests and
# answer streams (up to 30 s; docker stop waits 45 s, as stop_grace_period), while the
# new browser app is published.
switch_app() {  # the ids of the running app containers
  local old=$1 new= id count name stopping
  count=$(wc -w <<<"$old")
  log "starting the new app container beside the old one"
  compose up --detach --no-deps --no-recreate --scale "app=$((count + 1))" app >&2
  for id in $(compose ps -q app); do
    [[ $old == *"$id"* ]] || new=$id
  done
  [[ -n $new ]] || die "no new app container started"
  nginx_id=$(compose ps -q nginx)
  until [[ $(docker inspect -f '{{.State.Health.Status}}' "$new") == healthy ]]; do
    if [[ $(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$new") != "running starting" ]]; then
      docker logs --tail 30 "$new" >&2 || true
      docker rm -f "$new" >/dev/null
      die "the new app container failed before it was healthy (removed); the old one still serves"
    fi
    sleep 2
  done
  name=$(docker inspect -f '{{.Name}}' "$new")
  log "the new app container ${name#/} is healthy: switching nginx to it"
  nginx_to "${name#/}"
  log "nginx sends to ${name#/} alone: stopping the old app container (its requests and streams drain, up to 45 s)"
  # shellcheck disable=SC2086 # one id per word
  docker stop -t 45 $old >/dev/null &
  stopping=$!
  publish_frontend
  wait "$stopping" || die "docker stop of the old app container failed"
  # 137: still running after 45 s, killed (what was left of its streams was cut).
  # shellcheck disable=SC2086
  log "the old app container is stopped (exit status $(docker inspect -f '{{.State.ExitCode}}' $old | xargs)) and removed"
  # shellcheck disable=SC2086
  docker rm $old >/dev/null
  # nginx's upstream keeps naming the new container (no second reload: each one retires
  # workers, and an HTTP/2 connection just opened on one of them can be cut); a restart of
  # nginx renders the service's name again, now only this container.
}

cmd_update() {
  check_env_file
  build
  compose up --detach --no-deps db >&2
  wait_healthy db 120
  # Expand-only migrations, as the Ansible deploy: the old app keeps working meanwhile.
  compose run --rm migrate >&2
  local old want have
  old=$(compose ps -q app)
  [[ -n $old ]] || { cmd_up; return; }
  # The container compose would make now (image and configuration) runs already.
  want=$(compose config --hash=app | awk '{print $2}')
  have=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.config-hash"}}' $old)
  if [[ $have == "$want" ]]; then
    log "the app container runs this release and configuration already"
    publish_frontend
  else
    switch_app "$old"
  fi
  # nginx and Certbot are recreated only where their own image or configuration changed
  # (then ports 80/443 go unanswered for the seconds nginx's restart takes); the one-shot
  # containers are brought to the new image without running again.
  compose up --detach --no-deps nginx certbot >&2
  compose up --no-start --no-deps migrate frontend >&2
  wait_healthy nginx 120
  log "updated to release $(cat "$stage/RELEASE")"
}

# One up/update/down at a time (two updates would each start an app container).
run_alone() {
  mkdir -p "$repo/build/compose"
  exec 7>>"$repo/build/compose/.run.lock"
  flock --nonblock 7 || die "another scripts/compose.sh up/update/down is running"
}

case ${1:-} in
  up) run_alone; cmd_up ;;
  update) run_alone; cmd_update ;;
  down) run_alone; check_env_file; compose down --remove-orphans ;;
  build) check_env_file; build ;;
  ps) check_env_file; compose ps ;;
  knowledgetree)
    shift
    check_env_file
    # Through the entrypoint: it makes DATABASE_URL from the container's environment.
    compose exec app /usr/local/bin/knowledgetree-entrypoint knowledgetree "$@"
    ;;
  logs) shift; check_env_file; compose logs --no-color "$@" ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
