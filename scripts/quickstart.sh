#!/usr/bin/env bash
# scripts/quickstart.sh - Weir's main job in one command: a real single-broker Kafka on
# loopback (scripts/kafka.sh) and a `weir proxy` sidecar in front of it.
#
#   clients bootstrap at 127.0.0.1:19092   (broker N is then served at 19093+N)
#   metrics, health, readiness at http://127.0.0.1:9901/{metrics,healthz,readyz}
#
# Ctrl-C stops the sidecar, then the Kafka broker this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p weir
started=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start --brokers 1
  started=1
fi
cleanup() { if ((started)); then scripts/kafka.sh stop; fi; }
trap cleanup EXIT

cat >&2 <<'MSG'
weir: sidecar on 127.0.0.1:19092 in front of Kafka at 127.0.0.1:9092. Try, in another shell:
  scripts/kafka.sh run org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:19092 --topic demo
  scripts/kafka.sh run org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:19092 --topic demo --from-beginning
  curl -s http://127.0.0.1:9901/metrics | grep weir_kafka_requests
MSG
# Not exec: the trap must run after the sidecar exits to stop Kafka.
"${CARGO_TARGET_DIR:-target}/release/weir" proxy --listen 127.0.0.1:19092 --bootstrap 127.0.0.1:9092 --admin 127.0.0.1:9901 "$@"
