#!/bin/sh
# Point nginx at one app container (scripts/compose.sh update, inside the nginx container):
#
#   switch-app.sh HOST   HOST: the container's id or name on the compose network (or
#                        `app`, the service: every container of it, as at nginx's start)
#
# Renders the upstream for HOST, checks the configuration and reloads nginx gracefully,
# then waits until every worker of the old configuration has stopped taking requests:
# from then on no new request reaches the old container, and the requests and answer
# streams those workers still carry run to their end on it. nginx resolves HOST now, so
# the container must be running.
set -eu
host=${1:?usage: switch-app.sh HOST}
conf=/run/knowledgetree-nginx
next=$(mktemp -d)
trap 'rm -rf "$next"' EXIT
KT_APP_HOST=$host python3 /opt/knowledgetree-nginx/render.py /opt/knowledgetree-nginx "$next"
cp "$conf/upstream.conf" "$next/upstream.conf.before"
cp "$next/upstream.conf" "$conf/upstream.conf"
if ! nginx -t -q; then
    cp "$next/upstream.conf.before" "$conf/upstream.conf"
    echo "switch-app.sh: nginx does not accept the upstream $host: left as it was" >&2
    exit 1
fi

# nginx renames a worker that is leaving to "nginx: worker process is shutting down" as
# soon as it has closed its listening sockets.
accepting_workers() {
    for cmdline in /proc/[0-9]*/cmdline; do
        if [ "$(tr -d '\0' <"$cmdline" 2>/dev/null)" = "nginx: worker process" ]; then
            pid=${cmdline#/proc/}
            echo "${pid%/cmdline}"
        fi
    done
}
before=$(accepting_workers)
nginx -s reload
tries=0
while :; do
    left=
    for pid in $before; do
        if [ "$(tr -d '\0' <"/proc/$pid/cmdline" 2>/dev/null)" = "nginx: worker process" ]; then
            left="$left $pid"
        fi
    done
    [ -z "$left" ] && exit 0
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then
        echo "switch-app.sh: workers$left still take requests 30 s after the reload" >&2
        exit 1
    fi
    sleep 0.1
done
