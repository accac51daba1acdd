//! Schema validation (`schema_validation:`) through a real sidecar, in front of the real
//! cluster and a real schema registry (Apicurio, scripts/registry.sh), with Confluent's
//! serializers (Python, librdkafka inside) and the Java client: records of the topic's schema
//! are written as their producers sent them (idempotent and transactional producers
//! included), others are refused with INVALID_RECORD naming each bad record, and a registry
//! that cannot answer fails closed (or open, by rule).

mod common;

use std::io::Write;
use std::path::Path;

use common::raw::{batch_of, read_frame, request, to_leader_of, Headers};
use common::{
    direct_bootstrap, java_client, java_client_output, python_client, rd, registry_url, unique, Sidecar, SidecarOptions,
};
use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_wire::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use weir_wire::kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use weir_wire::kafka_protocol::protocol::StrBytes;
use weir_wire::message::decode_response;

const AVRO: &str = r#"{"type": "record", "name": "Rec", "namespace": "weir.test", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string"},
  {"name": "tags", "type": {"type": "array", "items": "string"}}]}"#;

/// The lines `schema_client.py` printed; panics (with its stderr) if it failed.
fn python(dir: &Path, args: &[&str]) -> Vec<String> {
    let output = python_client(dir, args);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schema_client.py {args:?} failed:\n{stdout}\n{stderr}");
    stdout.lines().map(str::to_owned).collect()
}

/// A value in the registry wire format: magic 0, the schema id, the payload.
fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
    [&[0][..], &id.to_be_bytes(), payload].concat()
}

/// Produces one batch of these values (leaked: the batch builder wants them static) to
/// partition 0 of `topic` with a raw Produce v9; the partition's answer.
fn produce_raw(sidecar: &Sidecar, topic: &str, values: &[Vec<u8>]) -> PartitionProduceResponse {
    let values: Vec<(&'static [u8], Headers<'static>)> =
        values.iter().map(|v| (&*Vec::leak(v.clone()), &[][..])).collect();
    produce_batch(sidecar, topic, batch_of(&values))
}

/// Produces `batch` to partition 0 of `topic` with a raw Produce v9; the partition's answer.
fn produce_batch(sidecar: &Sidecar, topic: &str, batch: bytes::Bytes) -> PartitionProduceResponse {
    let part = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![part]);
    let mut stream = to_leader_of(sidecar, topic);
    stream.write_all(&request(ApiKey::Produce, 9, 21, &produce)).unwrap();
    let (_, response): (_, ProduceResponse) =
        decode_response(&read_frame(&mut stream).unwrap(), ApiKey::Produce, 9).unwrap();
    response.responses[0].partition_responses[0].clone()
}

fn record_errors(answer: &PartitionProduceResponse) -> Vec<(i32, String)> {
    let message = |e: &Option<StrBytes>| e.as_deref().unwrap_or_default().to_owned();
    answer.record_errors.iter().map(|e| (e.batch_index, message(&e.batch_index_error_message))).collect()
}

fn end_offset(topic: &str) -> i64 {
    use rdkafka::consumer::Consumer;
    let direct = rd::consumer(&direct_bootstrap(), &unique("check"), &[]);
    direct.fetch_watermarks(topic, 0, std::time::Duration::from_secs(10)).unwrap().1
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_records_of_the_subjects_schema_are_written_and_others_refused_naming_each() {
    let registry = registry_url();
    let prefix = unique("avro");
    let topic = format!("{prefix}-orders");
    let extra_yaml = format!(
        "schema_registry: {{url: '{registry}'}}
schema_validation:
  - {{name: orders, topics: ['{topic}'], value: avro}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    let dir = scratch_dir();
    std::fs::write(dir.join("order.avsc"), AVRO).unwrap();
    let serialized = ["--registry", &registry, "--topic", &topic, "--format", "avro", "--schema-file", "order.avsc"];

    // Confluent's serializer (registering the schema under `<topic>-value`), an idempotent
    // lz4 producer and a transactional one: everything written.
    let args = [&["produce", "--bootstrap", &bs][..], &serialized, &["--count", "50", "--idempotent"]];
    let lines = python(&dir, &[&args.concat()[..], &["--compression", "lz4"]].concat());
    assert_eq!(lines, ["delivered=50 failed=0"]);
    let transactional = ["--count", "20", "--transactional-id", &unique("txn")];
    let lines = python(&dir, &[&["produce", "--bootstrap", &bs][..], &serialized, &transactional].concat());
    assert_eq!(lines, ["delivered=20 failed=0"]);
    // Read directly and deserialized: the bytes are the serializer's.
    let lines =
        python(&dir, &[&["consume", "--bootstrap", &direct_bootstrap()][..], &serialized, &["--count", "70"]].concat());
    assert_eq!(lines[0], "consumed=70");
    assert_eq!(lines[1], r#"{"id": 0, "name": "record-0", "tags": []}"#);

    // The schema's id, as registering it again under the subject answers.
    let register = ["register", "--registry", &registry, "--type", "AVRO", "--schema-file", "order.avsc"];
    let subject = format!("{topic}-value");
    let id = python(&dir, &[&register[..], &["--subject", &subject]].concat())[0].replace("id=", "");
    let id: u32 = id.parse().unwrap();

    // Not in the wire format, a schema the registry does not have: refused (librdkafka).
    let raw = |hex: &str| {
        let args = ["produce-raw", "--bootstrap", &bs, "--topic", &topic, "--value-hex", hex, "--timeout-ms", "5000"];
        python(&dir, &args)
    };
    let lines = raw("7b7d");
    assert_eq!(lines[0], "delivered=0 failed=1");
    assert!(lines[1].starts_with("failed 0 INVALID_RECORD"), "{lines:?}");
    let lines = raw(&hex(&framed(999_999, &[2, 2, b'x', 0])));
    assert!(lines[1].starts_with("failed 0 INVALID_RECORD"), "{lines:?}");

    // One batch: a valid record, one cut short, one of a schema of another subject. The
    // batch is refused, each bad record named.
    std::fs::write(
        dir.join("other.avsc"),
        r#"{"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}"#,
    )
    .unwrap();
    let other_subject = format!("{prefix}-other-value");
    let other = python(
        &dir,
        &[
            "register",
            "--registry",
            &registry,
            "--type",
            "AVRO",
            "--schema-file",
            "other.avsc",
            "--subject",
            &other_subject,
        ],
    );
    let other: u32 = other[0].replace("id=", "").parse().unwrap();
    let answer =
        produce_raw(&sidecar, &topic, &[framed(id, &[2, 2, b'x', 0]), framed(id, &[2, 2]), framed(other, &[2])]);
    assert_eq!(answer.error_code, 87, "INVALID_RECORD: {answer:?}");
    let errors = record_errors(&answer);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 1);
    assert_eq!(
        errors[0].1,
        format!("value of record 1: not a value of schema {id}: 1 bytes wanted, 0 left at weir.test.Rec.name (byte 2) (rule `orders`)")
    );
    assert_eq!(
        errors[1],
        (2, format!("value of record 2: schema {other} is not a version of subject `{subject}` (rule `orders`)"))
    );
    assert_eq!(
        answer.error_message.as_deref(),
        Some(format!("{}; 1 more record(s) of the batch are invalid", errors[0].1).as_str())
    );

    assert_eq!(
        end_offset(&topic),
        70 + 1,
        "only the serializer's records (and one transaction marker) reached the broker"
    );
    let verdicts =
        |verdict: &str| sidecar.metric("weir_kafka_schema_records_total", &[("rule", "orders"), ("verdict", verdict)]);
    assert!(verdicts("valid") >= 71.0, "{}", verdicts("valid"));
    for verdict in ["not_framed", "unknown_schema", "invalid", "wrong_subject"] {
        assert!(verdicts(verdict) >= 1.0, "{verdict}");
    }
    assert!(sidecar.metric("weir_kafka_schema_refused_records_total", &[("rule", "orders")]) >= 5.0);
    sidecar.assert_quiet();
}

const JSON_SCHEMA: &str = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "Rec", "type": "object",
  "required": ["id", "name"],
  "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 20},
                 "tags": {"type": "array", "items": {"type": "string"}}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_documents_are_validated_against_the_registered_schema() {
    let registry = registry_url();
    let topic = format!("{}-events", unique("jsonschema"));
    let extra_yaml = format!(
        "schema_registry: {{url: '{registry}'}}
schema_validation:
  - {{name: events, topics: ['{topic}'], value: json_schema, key: json}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    let dir = scratch_dir();
    std::fs::write(dir.join("rec.json"), JSON_SCHEMA).unwrap();
    let serialized =
        ["--registry", &registry, "--topic", &topic, "--format", "json_schema", "--schema-file", "rec.json"];
    // Keys `k-<i>` are not JSON: the key rule refuses them, whatever the values.
    let args = [&["produce", "--bootstrap", &bs][..], &serialized, &["--count", "5", "--timeout-ms", "5000"]];
    let lines = python(&dir, &args.concat());
    assert_eq!(lines[0], "delivered=0 failed=5", "{lines:?}");
    assert!(lines[1].starts_with("failed 0 INVALID_RECORD"), "{lines:?}");
    // JSON keys, an idempotent gzip producer: written.
    let args = [&["produce", "--bootstrap", &bs][..], &serialized, &["--count", "30", "--json-keys", "--idempotent"]];
    let lines = python(&dir, &[&args.concat()[..], &["--compression", "gzip"]].concat());
    assert_eq!(lines, ["delivered=30 failed=0"]);

    let subject = format!("{topic}-value");
    let register =
        ["register", "--registry", &registry, "--type", "JSON", "--schema-file", "rec.json", "--subject", &subject];
    let id: u32 = python(&dir, &register)[0].replace("id=", "").parse().unwrap();
    let valid = framed(id, br#"{"id": 1, "name": "one", "tags": ["a"]}"#);
    let answer = produce_raw(&sidecar, &topic, &[valid.clone(), framed(id, br#"{"id": "x", "name": "two"}"#)]);
    assert_eq!(answer.error_code, 87);
    assert_eq!(
        record_errors(&answer),
        [(1, format!("value of record 1: not a value of schema {id}: a string where integer is wanted at /id (rule `events`)"))]
    );
    // Keyless records (the raw batches carry none) are not judged by the key rule.
    assert_eq!(produce_raw(&sidecar, &topic, &[valid.clone(), valid]).error_code, 0);
    assert_eq!(end_offset(&topic), 32);
    sidecar.assert_quiet();
}

const PROTO: &str = r#"syntax = "proto3";
package weir.test;
message Rec {
  int64 id = 1;
  string name = 2;
  repeated string tags = 3;
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_messages_are_decoded_as_the_message_their_indexes_name() {
    let registry = registry_url();
    let topic = format!("{}-recs", unique("proto"));
    let extra_yaml = format!(
        "schema_registry: {{url: '{registry}'}}
schema_validation:
  - {{name: recs, topics: ['{topic}'], value: protobuf}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    let dir = scratch_dir();
    std::fs::write(dir.join("rec.proto"), PROTO).unwrap();
    let protoc = std::process::Command::new("protoc").args(["--python_out=.", "rec.proto"]).current_dir(&dir).status();
    assert!(protoc.expect("run protoc (Debian's protobuf-compiler)").success());
    let serialized = ["--registry", &registry, "--topic", &topic, "--format", "protobuf"];
    let message = ["--proto-module", "rec_pb2", "--proto-message", "Rec"];
    let args = [&["produce", "--bootstrap", &bs][..], &serialized, &message, &["--count", "20", "--idempotent"]];
    assert_eq!(python(&dir, &args.concat()), ["delivered=20 failed=0"]);
    let direct = direct_bootstrap();
    let args = [&["consume", "--bootstrap", &direct][..], &serialized, &message, &["--count", "20"]];
    let lines = python(&dir, &args.concat());
    assert_eq!(
        (lines[0].as_str(), lines[2].as_str()),
        ("consumed=20", r#"{"id": 1, "name": "record-1", "tags": ["a"]}"#)
    );

    let subject = format!("{topic}-value");
    let register = [
        "register",
        "--registry",
        &registry,
        "--type",
        "PROTOBUF",
        "--schema-file",
        "rec.proto",
        "--subject",
        &subject,
    ];
    let id: u32 = python(&dir, &register)[0].replace("id=", "").parse().unwrap();
    // Message indexes [0] (one zero byte), then id 1 and name "x"; then the same cut short,
    // and a message index the schema does not have.
    let rec = [0, 0x08, 0x01, 0x12, 0x01, b'x'];
    let answer =
        produce_raw(&sidecar, &topic, &[framed(id, &rec), framed(id, &rec[..4]), framed(id, &[2, 10, 0x08, 0x01])]);
    assert_eq!(answer.error_code, 87);
    let errors = record_errors(&answer);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0]
            .1
            .starts_with(&format!("value of record 1: not a value of schema {id}: not a weir.test.Rec message: ")),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        (
            2,
            format!(
                "value of record 2: not a value of schema {id}: the schema has no message at indexes [5] (rule `recs`)"
            )
        )
    );
    assert_eq!(produce_raw(&sidecar, &topic, &[framed(id, &rec)]).error_code, 0);
    assert_eq!(end_offset(&topic), 21);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn json_values_are_checked_for_the_java_client_and_a_registry_down_fails_closed_or_open_by_rule() {
    let prefix = unique("json");
    let (json, closed, open) = (format!("{prefix}-json"), format!("{prefix}-closed"), format!("{prefix}-open"));
    // Nothing listens on port 1: the registry is down.
    let extra_yaml = format!(
        "schema_registry: {{url: 'http://127.0.0.1:1/apis/ccompat/v7', timeout_ms: 500}}
schema_validation:
  - {{name: events, topics: ['{json}'], value: json}}
  - {{name: closed, topics: ['{closed}'], value: avro}}
  - {{name: open, topics: ['{open}'], value: avro, on_registry_unavailable: accept}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    for topic in [&json, &closed, &open] {
        rd::create_topic(&direct_bootstrap(), topic, 1).await;
    }

    // The Java client, idempotent, JSON values: written; plain text: refused, told why.
    let args = ["produce", "--bootstrap", &bs, "--topic", &json, "--count", "100", "--idempotent", "--json-values"];
    let lines = java_client(&[&args[..], &["--compression", "zstd"]].concat());
    assert!(lines.iter().any(|l| l == "produced=100"), "{lines:?}");
    let output =
        java_client_output(&["produce", "--bootstrap", &bs, "--topic", &json, "--count", "1", "--timeout-ms", "20000"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a text value was written");
    assert!(stderr.contains("InvalidRecordException") && stderr.contains("value of record 0: not JSON: "), "{stderr}");
    assert_eq!(end_offset(&json), 100);

    // The registry cannot be asked: fail closed (a retriable error naming the registry) or
    // open (written unchecked, counted), by rule.
    let value = framed(1, &[2]);
    let refused = produce_raw(&sidecar, &closed, std::slice::from_ref(&value));
    assert_eq!(refused.error_code, 7, "REQUEST_TIMED_OUT: {refused:?}");
    let message = refused.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with(
            "the schema registry did not answer about schema 1: http://127.0.0.1:1/apis/ccompat/v7/schemas/ids/1"
        ) && message.ends_with("the records were not written (rule `closed`)"),
        "{message}"
    );
    assert_eq!(produce_raw(&sidecar, &open, &[value]).error_code, 0);
    assert_eq!((end_offset(&closed), end_offset(&open)), (0, 1));
    let unchecked = sidecar.metric("weir_kafka_schema_records_total", &[("rule", "open"), ("verdict", "unchecked")]);
    assert_eq!(unchecked, 1.0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_rule_writes_invalid_records_aside_and_the_valid_ones_on() {
    let prefix = unique("dlq");
    let (orders, dead, lost) = (format!("{prefix}-orders"), format!("{prefix}-dead"), format!("{prefix}-lost"));
    let extra_yaml = format!(
        "schema_validation:
  - {{name: orders, topics: ['{orders}'], value: json, on_invalid: dead_letter, dead_letter_topic: '{dead}'}}
  - {{name: lost, topics: ['{lost}'], value: json, on_invalid: dead_letter, dead_letter_topic: '{prefix}-missing'}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    for topic in [&orders, &dead, &lost] {
        rd::create_topic(&direct_bootstrap(), topic, 1).await;
    }

    // One batch: valid, invalid (with repeated header keys), valid. The valid two are
    // written, the invalid one goes to the dead-letter topic; the client is told its records
    // were written, without an offset (they are not where its batch said).
    let batch = batch_of(&[(b"{\"a\": 1}", &[]), (b"nope", &[("dup", b"x"), ("dup", b"y")]), (b"{\"a\": 2}", &[])]);
    let answer = produce_batch(&sidecar, &orders, batch);
    assert_eq!((answer.error_code, answer.base_offset), (0, -1), "{answer:?}");
    let written = rd::consume(&direct_bootstrap(), &orders, &unique("check"), 2, &[]);
    let values: Vec<&str> = written.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, [r#"{"a": 1}"#, r#"{"a": 2}"#]);
    let letters = rd::consume(&direct_bootstrap(), &dead, &unique("check"), 1, &[]);
    assert_eq!(letters[0].value, "nope");
    let header =
        |name: &str| letters[0].headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(header("dup"), ["x", "y"], "the record's own headers, repeated keys kept");
    assert_eq!(
        header("weir.dlq.reason"),
        ["value of record 1: not JSON: expected ident at line 1 column 2 (rule `orders`)"]
    );
    assert_eq!(header("weir.dlq.topic"), [orders.as_str()]);
    assert_eq!(header("weir.dlq.partition"), ["0"]);
    assert_eq!(header("weir.dlq.rule"), ["orders"]);
    assert_eq!(header("weir.dlq.client.id"), ["wire-test"]);

    // librdkafka, not idempotent, lz4: every record invalid, all dead-lettered, delivered.
    let dir = scratch_dir();
    let raw = ["produce-raw", "--bootstrap", &bs, "--topic", &orders, "--value-hex", "6e6f7065", "--count", "3"];
    assert_eq!(python(&dir, &[&raw[..], &["--compression", "lz4"]].concat()), ["delivered=3 failed=0"]);
    // An idempotent producer's batch cannot lose records: refused whole.
    let lines = python(&dir, &[&raw[..], &["--idempotent", "--timeout-ms", "5000"]].concat());
    assert_eq!(lines[0], "delivered=0 failed=3", "{lines:?}");
    assert!(lines[1].starts_with("failed 0 INVALID_RECORD"), "{lines:?}");
    assert_eq!((end_offset(&orders), end_offset(&dead)), (2, 4));

    // A dead-letter topic that does not exist: nothing is written, the producer may retry.
    let answer = produce_raw(&sidecar, &lost, &[b"nope".to_vec()]);
    assert_eq!(answer.error_code, 7, "REQUEST_TIMED_OUT: {answer:?}");
    let message = answer.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with(&format!("the dead-letter topic `{prefix}-missing` could not be written (")),
        "{message}"
    );
    assert!(message.ends_with("nothing of the batch was written (rule `lost`)"), "{message}");
    assert_eq!(end_offset(&lost), 0);
    let dead_lettered = sidecar.metric("weir_kafka_schema_dead_lettered_records_total", &[("rule", "orders")]);
    assert_eq!(dead_lettered, 4.0);
    sidecar.assert_quiet_except(&["cannot write to the dead-letter topic"]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory of the test's own for schema files.
fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("weir-schemas"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
