#!/usr/bin/env bash
# scripts/mesh-quickstart.sh - the whole mesh in one command: a real Kafka broker on loopback,
# `weir control`, the resources of examples/mesh/ applied with `weir ctl`, and two sidecars
# (`orders` on 127.0.0.1:19092, `billing` on 127.0.0.1:19192) configured by the control plane.
#
# It prints what to try, the topology page's address and the `weir ctl` set-up; Ctrl-C stops
# the sidecars, the control plane, and the Kafka broker if this script started it. State goes
# to $WEIR_MESH_DIR (default: a fresh directory under /tmp).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

cargo build --release -p weir
WEIR=${CARGO_TARGET_DIR:-$ROOT/target}/release/weir
DIR=${WEIR_MESH_DIR:-$(mktemp -d /tmp/weir-mesh.XXXXXX)}
mkdir -p "$DIR"

started=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start --brokers 1
  started=1
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((started)); then scripts/kafka.sh stop; fi
}
trap cleanup EXIT

"$WEIR" control --data-dir "$DIR/control" > "$DIR/control.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:15080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
# Answered, and by this one (not by another control plane already on the port).
if ! curl -sf http://127.0.0.1:15080/healthz >/dev/null || ! kill -0 "${pids[0]}" 2>/dev/null; then
  cat "$DIR/control.log" >&2
  echo "weir control did not start (is something else on 127.0.0.1:15080 or 15012?)" >&2
  exit 1
fi
export WEIR_CTL_TOKEN_FILE=$DIR/control/ctl-token
"$WEIR" ctl apply -f examples/mesh/

for workload in orders billing; do
  "$WEIR" proxy --control 127.0.0.1:15012 --workload "$workload" \
    --join-token-file "$DIR/control/join-token" --control-ca "$DIR/control/ca/bundle.pem" \
    --state-dir "$DIR/$workload" > "$DIR/$workload.log" 2>&1 &
  pids+=($!)
done
for port in 9901 9911; do
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
"$WEIR" ctl status

cat >&2 <<MSG

weir: the mesh is up (state and logs in $DIR).
  orders' sidecar:  127.0.0.1:19092   (principal orders: may write orders.*)
  billing's sidecar: 127.0.0.1:19192  (principal billing: may read orders.*)
Try, in another shell:
  scripts/kafka.sh run org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:19092 --topic orders.created
  scripts/kafka.sh run org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:19192 --topic orders.created --group billing.invoices --from-beginning
  scripts/kafka.sh run org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:19192 --topic orders.created   # refused: billing may write nothing (ClusterAuthorizationException)
  export WEIR_CTL_TOKEN_FILE=$DIR/control/ctl-token
  $WEIR ctl topology; $WEIR ctl status; $WEIR ctl get authorizationpolicies -o yaml
The topology page: http://127.0.0.1:15080/ui#token=$(cat "$DIR/control/ctl-token")
MSG
wait -n "${pids[@]}" || true
