//! Produce safeguards (`produce_safeguards:`) through a real sidecar in front of the real
//! cluster, with librdkafka and Java producers: writes that break a rule fail with the error a
//! broker would give (INVALID_REQUIRED_ACKS, POLICY_VIOLATION, MESSAGE_TOO_LARGE) and never
//! reach the broker; writes that keep the rules (an idempotent Java producer among them) are
//! written; a request mixing both is served in part, the refusal naming its rule. Rules about
//! records (size, required headers) read the records of batches of every codec both clients
//! write, name each bad record in `record_errors`, and refuse a batch that decompresses to more
//! than the sidecar reads.

mod common;

use std::io::Write;

use common::raw::{batch_of, partition_zero, read_frame, record_batch, request, to_leader_of};
use common::{direct_bootstrap, java_client, java_client_output, rd, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_wire::kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use weir_wire::kafka_protocol::protocol::StrBytes;
use weir_wire::message::decode_response;

fn safeguards(prefix: &str) -> String {
    format!(
        "produce_safeguards:
  - {{name: durable, topics: ['{prefix}-guarded'], require_acks_all: true, compression: [lz4, zstd]}}
  - {{name: small-batches, topics: ['{prefix}-small'], max_batch_bytes: 20000}}
  - {{name: archive, topics: ['{prefix}-archive*'], read_only: true}}
  - {{name: billing-only, topics: ['{prefix}-billing'], client_ids: ['billing-*']}}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_that_break_a_safeguard_are_refused_with_the_brokers_error_and_the_rest_are_written() {
    let prefix = unique("guard");
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: safeguards(&prefix), ..Default::default() });
    let bs = sidecar.bootstrap();
    let topic = |name: &str| format!("{prefix}-{name}");
    for name in ["guarded", "small", "archive", "billing", "free"] {
        rd::create_topic(&direct_bootstrap(), &topic(name), 1).await;
    }

    // acks=all and lz4 or zstd on the guarded topic.
    let guarded = topic("guarded");
    let refused = rd::produce_refused(&bs, &guarded, &[("acks", "1"), ("compression.type", "lz4")]).await;
    assert_eq!(refused.delivery, RDKafkaErrorCode::InvalidRequiredAcks);
    let refused = rd::produce_refused(&bs, &guarded, &[("acks", "all"), ("compression.type", "none")]).await;
    assert_eq!(refused.delivery, RDKafkaErrorCode::PolicyViolation);
    let keeps = rd::producer(&bs, &[("acks", "all"), ("compression.type", "zstd")]);
    rd::produce(&keeps, &guarded, "kept", 50).await;
    // The Java client, idempotent, lz4, acks=all: every record written.
    let lines = java_client(&[
        "produce",
        "--bootstrap",
        &bs,
        "--topic",
        &guarded,
        "--count",
        "200",
        "--idempotent",
        "--compression",
        "lz4",
        "--acks",
        "all",
    ]);
    assert!(lines.iter().any(|l| l == "produced=200"), "{lines:?}");
    let written = rd::consume(&direct_bootstrap(), &guarded, &unique("check"), 250, &[]);
    assert_eq!(written.len(), 250, "only what keeps the rules was written");

    // Batches over 20,000 bytes are too large; librdkafka's smaller ones go through.
    let small = topic("small");
    let big_batches = [("batch.size", "1000000"), ("linger.ms", "200"), ("compression.type", "none")];
    let big = rd::producer(&bs, &big_batches);
    let value = vec![b'x'; 2000];
    let sends: Vec<_> = (0..50)
        .map(|_| big.send_result(rdkafka::producer::FutureRecord::<(), _>::to(&small).payload(&value)).unwrap())
        .collect();
    for send in sends {
        let (error, _) = send.await.unwrap().expect_err("a 100 KB batch is over the limit");
        assert_eq!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
    }
    let fitting = rd::producer(&bs, &[("batch.size", "16000"), ("compression.type", "none")]);
    rd::produce(&fitting, &small, "fits", 20).await;

    // Read-only: no write, but reading goes on.
    let archive = topic("archive");
    rd::produce(&rd::producer(&direct_bootstrap(), &[]), &archive, "old", 3).await;
    let refused = rd::produce_refused(&bs, &archive, &[]).await;
    assert_eq!(refused.delivery, RDKafkaErrorCode::PolicyViolation);
    assert_eq!(rd::consume(&bs, &archive, &unique("reader"), 3, &[]).len(), 3);

    // Only billing client ids may write to the billing topic.
    let billing = topic("billing");
    let refused = rd::produce_refused(&bs, &billing, &[("client.id", "orders-api")]).await;
    assert_eq!(refused.delivery, RDKafkaErrorCode::PolicyViolation);
    rd::produce(&rd::producer(&bs, &[("client.id", "billing-api")]), &billing, "bill", 5).await;

    // One request, a refused topic and a free one: served in part, the refusal named.
    let free = topic("free");
    let mut stream = to_leader_of(&sidecar, &free);
    let part = partition_zero;
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![part(&archive, b"must-not-land"), part(&free, b"mixed-ok")]);
    stream.write_all(&request(ApiKey::Produce, 9, 7, &produce)).unwrap();
    let (_, response): (_, ProduceResponse) =
        decode_response(&read_frame(&mut stream).unwrap(), ApiKey::Produce, 9).unwrap();
    let answer = |name: &str| {
        let entry = response.responses.iter().find(|t| t.name.as_str() == name);
        entry.unwrap_or_else(|| panic!("no entry for {name}: {response:?}")).partition_responses[0].clone()
    };
    assert_eq!(answer(&free).error_code, 0, "the free topic's write was served");
    let refusal = answer(&archive);
    assert_eq!(refusal.error_code, 44);
    assert_eq!(
        refusal.error_message.as_deref(),
        Some(format!("topic `{archive}` is read-only (rule `archive`)").as_str())
    );
    let direct = rd::consume(&direct_bootstrap(), &archive, &unique("check"), 3, &[]);
    assert!(direct.iter().all(|r| r.value.starts_with("old")), "a refused write reached the broker: {direct:?}");

    // A batch whose header lies about its length (longer than the bytes sent) cannot be judged
    // from its header: it goes on, and the broker refuses it as corrupt. Nothing is written,
    // nothing slips past the rule, and the connection goes on serving.
    let mut lying = record_batch(b"lies").to_vec();
    lying[8..12].copy_from_slice(&(1_000_000i32).to_be_bytes());
    let mut stream = to_leader_of(&sidecar, &guarded);
    let part = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(guarded.clone())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(lying.into()))]);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![part]);
    stream.write_all(&request(ApiKey::Produce, 9, 8, &produce)).unwrap();
    let (_, response): (_, ProduceResponse) =
        decode_response(&read_frame(&mut stream).unwrap(), ApiKey::Produce, 9).unwrap();
    let code = response.responses[0].partition_responses[0].error_code;
    assert_ne!(code, 0, "a batch that lies about its length is not written");
    let direct = rd::consumer(&direct_bootstrap(), &unique("check"), &[]);
    let (_, end) = direct.fetch_watermarks(&guarded, 0, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(end, 250, "the partition still ends after the 250 records written above");

    let refused = |rule: &str, reason: &str| {
        sidecar.metric("weir_kafka_produce_refused_records_total", &[("rule", rule), ("reason", reason)])
    };
    assert!(refused("durable", "acks") >= 1.0 && refused("durable", "compression") >= 1.0);
    assert_eq!(refused("small-batches", "batch_size"), 50.0);
    assert!(refused("archive", "read_only") >= 2.0 && refused("billing-only", "client_id") >= 1.0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn record_rules_read_batches_of_every_codec_and_name_each_bad_record() {
    let prefix = unique("records");
    let traced = format!("{prefix}-traced");
    let extra_yaml = format!(
        "limits: {{max_decompressed_batch_bytes: 1048576}}
produce_safeguards:
  - {{name: traced, topics: ['{traced}'], required_headers: [dup], max_record_bytes: 1000}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &traced, 1).await;

    // librdkafka, every codec (snappy as one raw block): records carrying the header are
    // written, one without it is refused as an invalid record.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer = rd::producer(&bs, &[("compression.type", codec), ("linger.ms", "50")]);
        rd::produce(&producer, &traced, codec, 20).await;
        let refused = rd::produce_refused(&bs, &traced, &[("compression.type", codec)]).await;
        assert_eq!(refused.delivery, RDKafkaErrorCode::InvalidRecord, "{codec}");
    }
    // The Java client, idempotent, snappy in xerial framing and zstd: written.
    for codec in ["snappy", "zstd"] {
        let args = ["produce", "--bootstrap", &bs, "--topic", &traced, "--count", "100", "--idempotent"];
        let lines = java_client(&[&args[..], &["--compression", codec]].concat());
        assert!(lines.iter().any(|l| l == "produced=100"), "{codec}: {lines:?}");
    }
    // A record over 1,000 bytes: the Java client is told which and why.
    let args = ["produce", "--bootstrap", &bs, "--topic", &traced, "--count", "1", "--pad", "2000"];
    let output = java_client_output(&[&args[..], &["--compression", "gzip", "--timeout-ms", "20000"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a 2 KB record was written");
    assert!(stderr.contains("record 0 is 20") && stderr.contains("at most 1000 (rule `traced`)"), "{stderr}");

    // A batch of three whose middle record lacks the header: the batch is refused, and
    // `record_errors` names that record.
    let mut stream = to_leader_of(&sidecar, &traced);
    let batch = batch_of(&[(b"first", &[("dup", b"a")]), (b"second", &[("other", b"x")]), (b"third", &[("dup", b"")])]);
    let part = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(traced.clone())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![part]);
    stream.write_all(&request(ApiKey::Produce, 9, 11, &produce)).unwrap();
    let (_, response): (_, ProduceResponse) =
        decode_response(&read_frame(&mut stream).unwrap(), ApiKey::Produce, 9).unwrap();
    let answer = &response.responses[0].partition_responses[0];
    let why = "record 1 has no header `dup` (rule `traced`)";
    assert_eq!((answer.error_code, answer.error_message.as_deref()), (87, Some(why)));
    let named: Vec<(i32, Option<&str>)> =
        answer.record_errors.iter().map(|e| (e.batch_index, e.batch_index_error_message.as_deref())).collect();
    assert_eq!(named, [(1, Some(why))]);

    // Four megabytes of zeros compress to a few kilobytes; read, they would be four times the
    // sidecar's limit: refused unread.
    let bomb = rd::producer(&bs, &[("compression.type", "zstd"), ("message.max.bytes", "10000000")]);
    let zeros = vec![0u8; 4 << 20];
    let record = rdkafka::producer::FutureRecord::<(), _>::to(&traced).payload(&zeros);
    let (error, _) = bomb.send(record, std::time::Duration::from_secs(10)).await.expect_err("the bomb was written");
    assert_eq!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PolicyViolation));

    // Exactly what kept the rule is in the log, header and all.
    let written = rd::consume(&direct_bootstrap(), &traced, &unique("check"), 300, &[]);
    assert_eq!(written.len(), 300);
    assert!(written.iter().all(|r| r.headers.iter().any(|(k, _)| k == "dup")), "a record without the header");
    let direct = rd::consumer(&direct_bootstrap(), &unique("check"), &[]);
    let (_, end) = direct.fetch_watermarks(&traced, 0, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(end, 300, "nothing refused reached the broker");

    let refused = |reason: &str| {
        sidecar.metric("weir_kafka_produce_refused_records_total", &[("rule", "traced"), ("reason", reason)])
    };
    assert!(refused("missing_header") >= 6.0, "{}", refused("missing_header"));
    assert!(refused("record_size") >= 1.0);
    assert!(refused("too_large_to_read") >= 1.0);
    sidecar.assert_quiet();
}
