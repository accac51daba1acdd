#!/usr/bin/env bash
# scripts/test.sh - Weir's whole test suite: starts a real 3-broker Kafka cluster
# (scripts/kafka.sh), a schema registry (scripts/registry.sh), a trace backend
# (scripts/jaeger.sh; built from the Go module proxy the first time) and a KMS speaking AWS
# KMS's API (scripts/kms.sh, moto's server from the Python venv), an MQTT broker
# (scripts/mosquitto.sh: Debian's Mosquitto) and RabbitMQ (scripts/rabbitmq.sh: Debian's
# rabbitmq-server), makes the Python
# clients' venv (scripts/python-env.sh), runs every cargo test against them, then
# stops what it started. This is the README's test command, and .ci/run calls it too.
#
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p weir-wire).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=0 registry_started=0 jaeger_started=0 kms_started=0 mosquitto_started=0 rabbitmq_started=0
stop() {
  if ((rabbitmq_started)); then scripts/rabbitmq.sh stop; fi
  if ((mosquitto_started)); then scripts/mosquitto.sh stop; fi
  if ((kms_started)); then scripts/kms.sh stop; fi
  if ((jaeger_started)); then scripts/jaeger.sh stop; fi
  if ((registry_started)); then scripts/registry.sh stop; fi
  if ((started)); then scripts/kafka.sh stop; fi
}
trap stop EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start --brokers 3
  started=1
fi
if ! scripts/registry.sh status >/dev/null 2>&1; then
  scripts/registry.sh start
  registry_started=1
fi
if ! scripts/jaeger.sh status >/dev/null 2>&1; then
  scripts/jaeger.sh start
  jaeger_started=1
fi
scripts/python-env.sh >/dev/null
if ! scripts/kms.sh status >/dev/null 2>&1; then
  scripts/kms.sh start
  kms_started=1
fi
if ! scripts/mosquitto.sh status >/dev/null 2>&1; then
  scripts/mosquitto.sh start
  mosquitto_started=1
fi
if ! scripts/rabbitmq.sh status >/dev/null 2>&1; then
  scripts/rabbitmq.sh start
  rabbitmq_started=1
fi

# The checked-in Kafka schema tables must be what the pinned Kafka's specs give.
scripts/regen-schema.sh --check

# Two cores: more parallel scenarios than this only make each one slower.
cargo test --workspace "$@" -- --test-threads 2
