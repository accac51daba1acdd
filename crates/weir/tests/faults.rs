//! Fault injection through a real sidecar in front of the real cluster: what real clients do
//! with the faults, which is what a user runs chaos to learn.
//!
//! - Idempotent producers (librdkafka and Java) told NOT_LEADER_OR_FOLLOWER for writes the
//!   broker made, and cut off before hearing their answers, still leave every record in the
//!   log exactly once (read back from the cluster directly, not through the sidecar).
//! - A consumer shown a batch with a bad CRC raises its client's CRC error.
//! - A consumer shown duplicated batches loses nothing; the Java consumer delivers each record
//!   once, librdkafka a batch repeated within one response twice, at its first offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{direct_bootstrap, java_client, java_client_output, rd, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

/// One produce request in five is answered NOT_LEADER_OR_FOLLOWER after the broker wrote it,
/// and one in twenty loses its connection before the answer comes back.
const PRODUCE_CHAOS: &str = r#"faults:
  - name: not-leader
    api_keys: [Produce]
    rate: 0.2
    inject: {error: NOT_LEADER_OR_FOLLOWER}
  - name: cut
    api_keys: [Produce]
    rate: 0.05
    inject: drop_connection
"#;

fn injected(sidecar: &Sidecar, rule: &str, fault: &str) -> f64 {
    sidecar.metric("weir_kafka_faults_injected_total", &[("rule", rule), ("fault", fault)])
}

/// The faults the sidecar says aloud: its warning that injection is on, and the
/// connections it dropped on purpose.
const FAULTS_ANNOUNCED: &[&str] = &["FAULT INJECTION IS ON"];

/// Every record of `topic`, read straight from the cluster: each value once, or a panic.
fn read_back(topic: &str, count: usize) -> BTreeSet<String> {
    let records = rd::consume(&direct_bootstrap(), topic, &unique("read-back"), count, &[]);
    let values = rd::values(&records);
    assert_eq!(values.len(), records.len(), "a value was written twice");
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producers_write_every_record_exactly_once_under_injected_errors_and_drops() {
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: PRODUCE_CHAOS.into(), ..Default::default() });
    let bs = sidecar.bootstrap();
    let topic = unique("chaos");
    rd::create_topic(&direct_bootstrap(), &topic, 3).await;
    const EACH: usize = 3000;

    // Small batches, so that the records take many requests and meet many faults.
    let producer = rd::producer(&bs, &[("enable.idempotence", "true"), ("batch.num.messages", "40")]);
    rd::produce(&producer, &topic, "rd", EACH).await;
    drop(producer);
    let (count, timeout) = (EACH.to_string(), "120000".to_string());
    let java = java_client(&[
        "produce",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        &count,
        "--prefix",
        "java",
        "--idempotent",
        "--timeout-ms",
        &timeout,
        "--property",
        "batch.size=2000",
        "--property",
        "linger.ms=0",
    ]);
    assert!(java.iter().any(|l| l == &format!("produced={EACH}")), "{java:?}");

    let values = read_back(&topic, 2 * EACH);
    let expected: BTreeSet<String> = (0..EACH).flat_map(|i| [format!("rd-{i}"), format!("java-{i}")]).collect();
    assert_eq!(values, expected);
    // The faults did happen: the proof is not a run that met none.
    assert!(injected(&sidecar, "not-leader", "error") >= 5.0, "{}", sidecar.metrics());
    assert!(injected(&sidecar, "cut", "drop_connection") >= 1.0, "{}", sidecar.metrics());
    assert!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "fault_injected")]) >= 1.0);
    sidecar.assert_quiet_except(FAULTS_ANNOUNCED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_batch_raises_the_crc_error_of_librdkafka_and_of_the_java_consumer() {
    let topic = unique("corrupt");
    let faults = format!(
        "faults:\n  - name: bad-crc\n    api_keys: [Fetch]\n    topics: [{topic}]\n    rate: 1\n    inject: corrupt_batch\n"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: faults, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    rd::produce(&rd::producer(&direct_bootstrap(), &[]), &topic, "v", 10).await;

    // librdkafka checks CRCs when asked to (check.crcs): the batch is refused as a bad
    // message (RD_KAFKA_RESP_ERR__BAD_MSG), nothing of it delivered.
    let consumer = rd::consumer(&bs, &unique("crc"), &[("check.crcs", "true")]);
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        assert!(Instant::now() < deadline, "librdkafka reported no error for a corrupted batch");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => break e,
            Some(Ok(m)) => panic!("librdkafka delivered offset {} of a corrupted batch", m.offset()),
            None => {}
        }
    };
    assert_eq!(error, KafkaError::MessageConsumption(RDKafkaErrorCode::BadMessage), "librdkafka: {error}");
    drop(consumer);
    // Not checking, it reads the batch: only the CRC was damaged.
    let unchecked = rd::consume(&bs, &topic, &unique("no-crc"), 10, &[("check.crcs", "false")]);
    assert_eq!(rd::values(&unchecked).len(), 10);

    // The Java consumer checks them by default.
    let out = java_client_output(&[
        "consume",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        "10",
        "--timeout-ms",
        "30000",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the Java consumer read a corrupted batch");
    assert!(stderr.contains("Record is corrupt (stored crc = "), "Java: {stderr}");
    assert!(injected(&sidecar, "bad-crc", "corrupt_batch") >= 2.0);
    sidecar.assert_quiet_except(FAULTS_ANNOUNCED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_shown_duplicated_batches_delivers_each_record_once() {
    let faults = "faults:\n  - {name: twice, api_keys: [Fetch], rate: 1, inject: duplicate_batches}\n";
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: faults.into(), ..Default::default() });
    let bs = sidecar.bootstrap();
    let topic = unique("twice");
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;
    rd::produce(&rd::producer(&direct_bootstrap(), &[("batch.num.messages", "20")]), &topic, "v", 200).await;

    // The Java consumer skips records below its position: each is delivered once.
    let java = java_client(&["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "200"]);
    let java_values: BTreeSet<&str> = java.iter().filter_map(|l| l.split(" value=").nth(1)).collect();
    assert_eq!(java_values.len(), 200, "{java:?}");

    // librdkafka (2.x) skips only records below the position it had when the response
    // came, so a batch repeated within one response is delivered twice: with the offsets
    // it had the first time, which is how an application can tell. Nothing is lost.
    let consumer = rd::consumer(&bs, &unique("twice"), &[]);
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let (mut seen, mut repeats) = (BTreeMap::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 200 {
        assert!(Instant::now() < deadline, "librdkafka read {} of 200 records", seen.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("no consume error");
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if let Some(first) = seen.insert(m.offset(), value.clone()) {
                assert_eq!(first, value, "offset {} delivered with another value", m.offset());
                repeats += 1;
            }
        }
    }
    let expected: BTreeSet<String> = (0..200).map(|i| format!("v-{i}")).collect();
    assert_eq!(seen.into_values().collect::<BTreeSet<_>>(), expected);
    eprintln!("librdkafka delivered {repeats} duplicated records again, at their first offsets");
    assert!(injected(&sidecar, "twice", "duplicate_batches") >= 2.0);
    sidecar.assert_quiet_except(FAULTS_ANNOUNCED);
}
