//! Canary routing through a real sidecar in front of the real cluster: idempotent librdkafka
//! and Java producers writing to a split topic see every record acknowledged; read straight
//! from the cluster, the canary partitions' records are in the canary topic and the others in
//! the split topic, each once, at the partition and offset the client was told.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{direct_bootstrap, java_client, rd, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

/// Every record of `topic`, read from the cluster directly: value → (partition, offset).
fn read_back(topic: &str, count: usize) -> BTreeMap<String, (i32, i64)> {
    let consumer = rd::consumer(&direct_bootstrap(), &unique("read-back"), &[]);
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} records of {topic}", seen.len());
        if let Some(record) = consumer.poll(Duration::from_millis(200)) {
            let record = record.expect("consume");
            let value = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
            let earlier = seen.insert(value.clone(), (record.partition(), record.offset()));
            assert!(earlier.is_none(), "{value} is in {topic} twice");
        }
    }
    let grace = Instant::now() + Duration::from_millis(500);
    while Instant::now() < grace {
        if let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) {
            panic!("{topic} holds more than {count} records: offset {} of {}", record.offset(), record.partition());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_of_the_partitions_is_written_to_the_canary_topic_at_the_offsets_the_clients_were_told() {
    let (topic, canary) = (unique("orders"), unique("orders-canary"));
    let rules = format!("canaries:\n  - {{name: half, topic: {topic}, to: {canary}, share: 0.5}}\n");
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: rules, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 4).await;
    rd::create_topic(&direct_bootstrap(), &canary, 4).await;

    // librdkafka, idempotent, small batches: many requests, most of them split.
    const RD: usize = 2000;
    let producer = rd::producer(&bs, &[("enable.idempotence", "true"), ("batch.num.messages", "50")]);
    let futures: Vec<_> = (0..RD)
        .map(|i| {
            let (key, value) = (format!("k-{i}"), format!("rd-{i}"));
            let headers = OwnedHeaders::new().insert(Header { key: "h", value: Some("v") });
            let record = FutureRecord::to(&topic).key(&key).payload(&value).headers(headers);
            let future = producer.send_result(record).expect("enqueue");
            (value, future)
        })
        .collect();
    let mut told = BTreeMap::new();
    for (value, future) in futures {
        let delivery = future.await.expect("delivery").unwrap_or_else(|(e, _)| panic!("{value}: {e}"));
        told.insert(value, (delivery.partition, delivery.offset));
    }
    // Java, idempotent.
    const JAVA: usize = 1000;
    let out = java_client(&[
        "produce",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        &JAVA.to_string(),
        "--prefix",
        "java",
        "--idempotent",
    ]);
    assert!(out.iter().any(|l| l.contains(&format!("produced={JAVA}"))), "{out:?}");

    // Partitions 1 and 3 are the canary's (half of four); 0 and 2 stay.
    let routed = sidecar.metric("weir_kafka_canary_records_total", &[("rule", "half")]) as usize;
    assert!(routed > 0 && routed < RD + JAVA, "{routed} routed");
    let stayed = read_back(&topic, RD + JAVA - routed);
    let moved = read_back(&canary, routed);
    assert!(stayed.values().all(|(p, _)| [0, 2].contains(p)), "only the split topic's own partitions stay");
    assert!(moved.values().all(|(p, _)| [1, 3].contains(p)), "the canary's partitions are moved whole");
    for (value, at) in &told {
        let found = stayed.get(value).or_else(|| moved.get(value));
        assert_eq!(found, Some(at), "{value}: the client was told {at:?}");
    }
    let java = (0..JAVA).filter(|i| {
        let value = format!("java-{i}");
        stayed.contains_key(&value) || moved.contains_key(&value)
    });
    assert_eq!(java.count(), JAVA, "every Java record is in one of the two topics");
    sidecar.assert_quiet();
}
