#!/usr/bin/env bash
# Start to ready of an idle blue-green colour (docs/BENCHMARKS.md, "rollback"; the health
# gate's default in roles/app/defaults/main.yml). Run ON an app host, as root, while the
# other colour is live (nginx never points at the idle one, so users see nothing):
#
#   bench/colour_start.sh green 8002 3          # cached ONNX encoder (a rollback)
#   bench/colour_start.sh green 8002 3 torch    # QUERY_EMBEDDING_BACKEND=torch: what a new
#                                               # model or library version starts with
#
# Each run: `systemctl start`, /readyz polled every 0.1 s until 200, the resident memory
# then and 6 s later (the torch model loads after ready), `systemctl stop`.
set -euo pipefail
color=$1 port=$2 runs=$3 mode=${4:-onnx}
dropin=/run/systemd/system/knowledgetree@$color.service.d
cleanup() { rm -rf "$dropin"; systemctl daemon-reload; }
trap cleanup EXIT
if [ "$mode" = torch ]; then
  mkdir -p "$dropin"
  printf '[Service]\nEnvironment=QUERY_EMBEDDING_BACKEND=torch\n' >"$dropin/zz-bench.conf"
fi
systemctl daemon-reload
rss_mib() { echo $(($(ps -o rss= -p "$(systemctl show --value -p MainPID "knowledgetree@$color")") / 1024)); }
for i in $(seq "$runs"); do
  read -r load _ </proc/loadavg
  start=$(date +%s.%N)
  systemctl start "knowledgetree@$color"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; do
    sleep 0.1
  done
  ready=$(date +%s.%N)
  at_ready=$(rss_mib)
  detail=$(curl -s "http://127.0.0.1:$port/readyz" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["checks"]["embedding_model"]["detail"])')
  sleep 6
  later=$(rss_mib)
  systemctl stop "knowledgetree@$color"
  printf '%s run %d: %.1f s to ready (load %s); RSS at ready %d MiB, 6 s later %d MiB; %s\n' \
    "$mode" "$i" "$(awk -v a="$start" -v b="$ready" 'BEGIN {print b - a}')" "$load" \
    "$at_ready" "$later" "$detail"
done
