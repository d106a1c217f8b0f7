#!/usr/bin/env bash
# run.sh API_BIN WORKER_BIN: run the api and the worker in the foreground,
# with the caller's environment (NAMESPACE, QUIET_WINDOW, ...). Ctrl-C (or
# SIGTERM) stops both gracefully; if either exits on its own, the other is
# stopped too and the script exits with the first one's status.
set -uo pipefail

api_bin=${1:?usage: run.sh API_BIN WORKER_BIN}
worker_bin=${2:?usage: run.sh API_BIN WORKER_BIN}

pids=()
stop() {
  trap - INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait
}
trap 'stop; exit 0' INT
trap 'stop; exit 0' TERM

echo "run: api on ${HTTP_ADDR:-:8000}, namespace ${NAMESPACE:-lull}, Redis ${REDIS_URL:-redis://127.0.0.1:6379/0}; Ctrl-C stops both" >&2
"$api_bin" & pids+=($!)
"$worker_bin" & pids+=($!)

wait -n "${pids[@]}"
status=$?
echo "run: a process exited with status $status; stopping the other" >&2
stop
exit "$status"
