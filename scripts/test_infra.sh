#!/usr/bin/env bash
# `make test-infra`: the infra suites in three lanes at once, each on hosts of its own.
#
#   lane 1: the main suite on kt-test (provision twice, blue-green, drift, hardening...)
#   lane 2: the backup drill (kt-bk, kt-bkoff), monitoring (kt-mon), the walk-through (kt-walk),
#           then the drill's restore onto kt-walk as onto a new server
#   lane 3: the Docker Compose path (`make test-compose`: its own dockerd, images, pebble)
#
# Most of a lane's time is waiting (apt, ssh round trips, hosts starting), so the lanes
# on 2 cores take well under the sum of their times. What they share takes turns
# (scripts/testhost.sh, scripts/pebble.sh, scripts/build_release.sh and the results file
# lock). Lanes 2 and 3 keep their output in build/test-infra-lane{2,3}.log, printed after
# lane 1's.
# One lane alone: `.venv/bin/pytest tests/infra/...` as usual.
set -uo pipefail
cd "$(dirname "$0")/.."

# The backup drill's restore onto a new server last: onto the walk-through's host (kept
# up to the end of the session), with the drill's hosts still up.
lane2=(tests/infra/backup/test_pitr.py tests/infra/backup/test_restore_drill.py
  tests/infra/monitoring tests/infra/test_walkthrough.py
  tests/infra/backup/test_restore_onto_a_new_server.py)
lane2_folders=(tests/infra/backup tests/infra/monitoring tests/infra/test_walkthrough.py)
log=build/test-infra-lane2.log
log3=build/test-infra-lane3.log
mkdir -p build

.venv/bin/pytest --durations=15 "${lane2[@]}" >"$log" 2>&1 &
lane2_pid=$!
KT_COMPOSE_REQUIRED=1 make --no-print-directory test-compose >"$log3" 2>&1 &
lane3_pid=$!
# Lanes 2 and 3 must not outlive an interrupted run (their hosts would be left half-made).
trap 'kill "$lane2_pid" "$lane3_pid" 2>/dev/null' INT TERM

.venv/bin/pytest --durations=15 tests/infra "${lane2_folders[@]/#/--ignore=}"
lane1_rc=$?
wait "$lane2_pid"
lane2_rc=$?
wait "$lane3_pid"
lane3_rc=$?

echo
echo "======== lane 2: ${lane2[*]} (exit $lane2_rc) ========"
cat "$log"
echo
echo "======== lane 3: make test-compose (exit $lane3_rc) ========"
cat "$log3"
echo "test-infra: lane 1 exit $lane1_rc, lane 2 exit $lane2_rc, lane 3 exit $lane3_rc"
((lane1_rc == 0 && lane2_rc == 0 && lane3_rc == 0))
