#!/usr/bin/env bash
# Headless run of the notebook series, the way CI runs it.
#
# The same runner as `tunekit run`, with the model hub offline, and nothing left
# running afterwards whatever the outcome (the run directory stays for inspection).
#
#   ci/run-series.sh                                  # every stage, profile local
#   RUN_DIR=runs/ci ci/run-series.sh --stages 01,02,07 -p experiment_name=ci
#   TUNEKIT_PROFILE=gke ci/run-series.sh -p dry_run=true
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 IS_TESTING=1 PYTHONUNBUFFERED=1
TUNEKIT=${TUNEKIT:-tunekit}
RUN_DIR=${RUN_DIR:-runs/ci-$(date -u +%Y%m%d-%H%M%S)}

status=0
"$TUNEKIT" run --run-dir "$RUN_DIR" "$@" || status=$?
if [[ -f "$RUN_DIR/state.json" ]]; then
  "$TUNEKIT" down --run-dir "$RUN_DIR" || { ((status)) || status=1; }
fi
exit "$status"
