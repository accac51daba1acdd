#!/usr/bin/env bash
# scripts/kms.sh - a KMS that speaks AWS KMS's API, on this machine, for Weir's tests of
# `kms: {aws: ...}`: moto's server (PyPI `moto[server]`, installed into the tests' venv by
# scripts/python-env.sh), which keeps keys in memory and does Encrypt/Decrypt with them
# (every start begins empty; tests make their keys with tests/python/kms_admin.py).
#
#   scripts/kms.sh start    (idempotent: if it is already running and ready, says so)
#   scripts/kms.sh stop
#   scripts/kms.sh status   (exit 0 only if it is running and answering)
#   scripts/kms.sh url      (prints its endpoint, http://127.0.0.1:14566)
#
# It accepts any credentials (it does not check Signature Version 4 signatures).
#
# Environment:
#   WEIR_KMS_PORT    its port on 127.0.0.1 (default 14566; below the tests' 20000-32000)
#   WEIR_KMS_STATE   where its pid and log go (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/kms)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${WEIR_KMS_PORT:-14566}
STATE=${WEIR_KMS_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/kms}/port-$PORT
URL=http://127.0.0.1:$PORT
mkdir -p "$STATE"

answering() { curl -sf -o /dev/null "$URL/moto-api/" 2>/dev/null; }
running() { [[ -f $STATE/pid ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

cmd_start() {
  if running && answering; then
    echo "kms.sh: the KMS is already running and ready: $URL" >&2
    return
  fi
  local python; python=$("$ROOT/scripts/python-env.sh")
  local server; server=$(dirname "$python")/moto_server
  [[ -x $server ]] || { echo "kms.sh: $server is missing (moto[server] in tests/python/requirements.txt)" >&2; exit 1; }
  # Without the lock (fd 9), which would otherwise stay held for as long as it runs.
  setsid "$server" -H 127.0.0.1 -p "$PORT" > "$STATE/kms.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$STATE/pid"
  for _ in $(seq 150); do
    if answering; then
      echo "kms.sh: started moto's KMS on $URL (pid $(cat "$STATE/pid"), log $STATE/kms.log)" >&2
      return
    fi
    running || break
    sleep 0.2
  done
  echo "kms.sh: the KMS did not answer on $URL; its log:" >&2
  tail -20 "$STATE/kms.log" >&2
  exit 1
}

cmd_stop() {
  if running; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    for _ in $(seq 50); do running || break; sleep 0.1; done
    running && kill -9 "$(cat "$STATE/pid")" 2>/dev/null || true
  fi
  rm -f "$STATE/pid"
}

exec 9>"$STATE/lock"
case ${1:-} in
  start) flock 9; cmd_start ;;
  stop) flock 9; cmd_stop ;;
  status) running && answering ;;
  url) echo "$URL" ;;
  *) echo "usage: scripts/kms.sh start|stop|status|url" >&2; exit 2 ;;
esac
