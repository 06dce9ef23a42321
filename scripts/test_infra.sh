#!/usr/bin/env bash
# `make test-infra`: the infra suite in two lanes at once, each on test hosts of its own.
#
#   lane 1: the main suite on kt-test (provision twice, blue-green, drift, hardening...)
#   lane 2: the backup drill (kt-bk, kt-bkoff), monitoring (kt-mon), the walk-through (kt-walk),
#           then the drill's restore onto kt-walk as onto a new server
#
# Most of a lane's time is waiting (apt, ssh round trips, hosts starting), so two lanes
# on 2 cores take well under the sum of their times. What they share takes turns
# (scripts/testhost.sh, scripts/pebble.sh, scripts/build_release.sh and the results file
# lock). Lane 2's output is kept in build/test-infra-lane2.log and printed after lane 1's.
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
mkdir -p build

.venv/bin/pytest --durations=15 "${lane2[@]}" >"$log" 2>&1 &
lane2_pid=$!
# Lane 2 must not outlive an interrupted run (its hosts would be left half-made).
trap 'kill "$lane2_pid" 2>/dev/null' INT TERM

.venv/bin/pytest --durations=15 tests/infra "${lane2_folders[@]/#/--ignore=}"
lane1_rc=$?
wait "$lane2_pid"
lane2_rc=$?

echo
echo "======== lane 2: ${lane2[*]} (exit $lane2_rc) ========"
cat "$log"
echo "test-infra: lane 1 exit $lane1_rc, lane 2 exit $lane2_rc"
((lane1_rc == 0 && lane2_rc == 0))
