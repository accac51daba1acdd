#!/usr/bin/env python3
"""Schema-aware Kafka client for Weir's tests: Confluent's Python client (librdkafka) and its
schema registry serializers, as an application uses them.

  register --registry URL --subject S --type AVRO|JSON|PROTOBUF --schema-file F
      prints `id=N`
  produce --bootstrap B --registry URL --topic T --format avro|json_schema|protobuf
          --schema-file F --count N [--idempotent] [--transactional-id X]
          [--compression C] [--proto-module M --proto-message NAME] [--json-keys]
      values {"id": i, "name": "record-i", "tags": [...]} serialized (the schema registered
      under T-value by the serializer), keys k-<i> (--json-keys: {"k": i}); prints `delivered=N failed=M`, then per failure
      `failed <i> <error name> <error text>`
  produce-raw --bootstrap B --topic T --value-hex HEX [--count N]
      the same bytes as each value, no serializer; output as produce
  consume --bootstrap B --registry URL --topic T --format ... --count N [--proto-module ...]
      reads N records from the start and deserializes them; prints `consumed=N` and each
      value as JSON
Exit status 0 unless the arguments or the client itself failed (failed deliveries are output).
"""

import argparse
import importlib
import json
import os
import sys

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext


def value(i, fmt, proto_class=None):
    data = {"id": i, "name": f"record-{i}", "tags": ["a", "b"][: i % 3]}
    if fmt == "protobuf":
        message = proto_class()
        message.id = i
        message.name = data["name"]
        message.tags.extend(data["tags"])
        return message
    return data


def serializer(args, registry):
    text = open(args.schema_file).read() if args.schema_file else None
    if args.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer
        return AvroSerializer(registry, text), None
    if args.format == "json_schema":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        return JSONSerializer(text, registry), None
    if args.format == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        module = importlib.import_module(args.proto_module)
        cls = getattr(module, args.proto_message)
        return ProtobufSerializer(cls, registry, {"use.deprecated.format": False}), cls
    raise SystemExit(f"unknown format {args.format}")


def producer(args):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "linger.ms": 20,
        "message.timeout.ms": args.timeout_ms,
        "compression.type": args.compression,
    }
    if args.idempotent:
        conf["enable.idempotence"] = True
    if args.transactional_id:
        conf["transactional.id"] = args.transactional_id
    return Producer(conf)


def send_all(args, values):
    p = producer(args)
    if args.transactional_id:
        p.init_transactions(30)
        p.begin_transaction()
    outcomes = {}

    def report(i):
        def done(err, _msg):
            outcomes[i] = err
        return done

    for i, v in enumerate(values):
        key = json.dumps({"k": i}) if args.json_keys else f"k-{i}"
        p.produce(args.topic, key=key.encode(), value=v, on_delivery=report(i))
        p.poll(0)
    p.flush(args.timeout_ms / 1000 + 10)
    failed = {i: e for i, e in outcomes.items() if e is not None}
    if args.transactional_id:
        if failed:
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
    print(f"delivered={len(outcomes) - len(failed)} failed={len(failed) + len(values) - len(outcomes)}")
    for i, e in sorted(failed.items()):
        print(f"failed {i} {e.name()} {e.str()}")


def main():
    # Generated Protobuf modules are in the directory the client runs in.
    sys.path.insert(0, os.getcwd())
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    ap.add_argument("--bootstrap")
    ap.add_argument("--registry")
    ap.add_argument("--topic")
    ap.add_argument("--subject")
    ap.add_argument("--type")
    ap.add_argument("--format")
    ap.add_argument("--schema-file")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--idempotent", action="store_true")
    ap.add_argument("--json-keys", action="store_true")
    ap.add_argument("--transactional-id")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--proto-module")
    ap.add_argument("--proto-message")
    ap.add_argument("--value-hex")
    ap.add_argument("--timeout-ms", type=int, default=15000)
    args = ap.parse_args()

    if args.command == "register":
        registry = SchemaRegistryClient({"url": args.registry})
        text = open(args.schema_file).read()
        print(f"id={registry.register_schema(args.subject, Schema(text, args.type))}")
    elif args.command == "produce":
        registry = SchemaRegistryClient({"url": args.registry})
        serialize, cls = serializer(args, registry)
        context = SerializationContext(args.topic, MessageField.VALUE)
        send_all(args, [serialize(value(i, args.format, cls), context) for i in range(args.count)])
    elif args.command == "produce-raw":
        send_all(args, [bytes.fromhex(args.value_hex)] * args.count)
    elif args.command == "consume":
        registry = SchemaRegistryClient({"url": args.registry})
        if args.format == "avro":
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            deserialize = AvroDeserializer(registry)
        elif args.format == "json_schema":
            from confluent_kafka.schema_registry.json_schema import JSONDeserializer
            deserialize = JSONDeserializer(open(args.schema_file).read(), schema_registry_client=registry)
        else:
            from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
            cls = getattr(importlib.import_module(args.proto_module), args.proto_message)
            deserialize = ProtobufDeserializer(cls, {"use.deprecated.format": False})
        c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"schema-client-{args.topic}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([args.topic])
        out = []
        while len(out) < args.count:
            m = c.poll(30)
            if m is None:
                break
            if m.error():
                raise KafkaException(m.error())
            v = deserialize(m.value(), SerializationContext(args.topic, MessageField.VALUE))
            if args.format == "protobuf":
                v = {"id": v.id, "name": v.name, "tags": list(v.tags)}
            out.append(v)
        c.close()
        print(f"consumed={len(out)}")
        for v in out:
            print(json.dumps(v, sort_keys=True))
    else:
        raise SystemExit(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
