//! Traffic shadowing through a real sidecar in front of the real cluster: what clients write to
//! a shadowed topic appears in the shadow topic (read straight from the cluster) with the same
//! keys, values and headers, unless the sidecar counted it dropped; and a shadow that cannot
//! be written costs the clients nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{direct_bootstrap, java_client, rd, unique, Sidecar, SidecarOptions};

fn written(sidecar: &Sidecar, rule: &str) -> f64 {
    sidecar.metric("weir_kafka_shadow_records_total", &[("rule", rule)])
}

fn dropped(sidecar: &Sidecar, rule: &str) -> f64 {
    ["queue_full", "unreachable", "refused", "stopped"]
        .iter()
        .map(|reason| sidecar.metric("weir_kafka_shadow_dropped_records_total", &[("rule", rule), ("reason", reason)]))
        .sum()
}

/// Waits until the sidecar has accounted for `records` copies of `rule` (written or dropped);
/// returns how many it dropped.
fn settled(sidecar: &Sidecar, rule: &str, records: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (w, d) = (written(sidecar, rule), dropped(sidecar, rule));
        if (w + d) as usize >= records {
            assert_eq!((w + d) as usize, records, "rule {rule}: {w} written and {d} dropped of {records}");
            return d as usize;
        }
        assert!(Instant::now() < deadline, "rule {rule}: only {w} written and {d} dropped of {records}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every record of `topic` read straight from the cluster, counted by (key, value, headers).
fn read_back(topic: &str, count: usize) -> BTreeMap<rd::Consumed, usize> {
    let mut seen = BTreeMap::new();
    for record in rd::consume(&direct_bootstrap(), topic, &unique("read-back"), count, &[]) {
        *seen.entry(record).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_write_is_copied_to_the_shadow_topic_with_its_keys_values_and_headers() {
    let (topic, shadow, elsewhere) = (unique("orders"), unique("orders-shadow"), unique("orders-elsewhere"));
    // One rule writes to the sidecar's own cluster, as the sidecar reaches it; the other names
    // its cluster's bootstrap servers itself, as a shadow on another cluster does.
    let servers = direct_bootstrap().replace(',', "', '");
    let rules = format!(
        "shadows:\n  - {{name: same, topic: {topic}, to: {shadow}}}\n  - {{name: other, topic: {topic}, to: {elsewhere}, bootstrap: ['{servers}']}}\n"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: rules, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 3).await;
    // Fewer partitions than the shadowed topic: partition p is written to p mod 2.
    rd::create_topic(&direct_bootstrap(), &shadow, 2).await;
    rd::create_topic(&direct_bootstrap(), &elsewhere, 3).await;

    const RD: usize = 100_000;
    const JAVA: usize = 2_000;
    let producer = rd::producer(&bs, &[("compression.codec", "lz4"), ("enable.idempotence", "true")]);
    rd::produce(&producer, &topic, "rd", RD).await;
    // The Java client, idempotent and compressed as well: its producer id and sequences stay
    // behind, the records go over.
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
        "--compression",
        "lz4",
    ]);
    assert!(out.iter().any(|l| l.contains(&format!("produced={JAVA}"))), "{out:?}");

    let total = RD + JAVA;
    let original = read_back(&topic, total);
    assert_eq!(original.values().sum::<usize>(), total);
    for (rule, to) in [("same", &shadow), ("other", &elsewhere)] {
        let lost = settled(&sidecar, rule, total);
        let copies = read_back(to, total - lost);
        for (record, n) in &copies {
            assert_eq!(original.get(record), Some(n), "rule {rule}: {record:?} copied {n} times");
        }
        assert_eq!(copies.values().sum::<usize>(), total - lost, "rule {rule}");
        eprintln!("rule {rule}: {} copied, {lost} dropped", total - lost);
    }
    assert_eq!(sidecar.metric("weir_kafka_shadow_queue_bytes", &[("rule", "same")]), 0.0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_that_cannot_be_written_drops_counted_copies_and_holds_up_no_write() {
    let topic = unique("orders");
    // Nothing listens on port 1: every copy fails, and the smallest queue fills behind them.
    let rules = format!(
        "shadows:\n  - {{name: nowhere, topic: {topic}, to: x, bootstrap: ['127.0.0.1:1'], queue_bytes: 65536}}\n"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: rules, ..Default::default() });
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), &topic, 3).await;

    const COUNT: usize = 20_000;
    let producer = rd::producer(&bs, &[]);
    rd::produce(&producer, &topic, "v", COUNT).await;
    assert_eq!(read_back(&topic, COUNT).len(), COUNT, "every write reached the shadowed topic");

    assert_eq!(settled(&sidecar, "nowhere", COUNT), COUNT);
    assert_eq!(written(&sidecar, "nowhere"), 0.0);
    let full =
        sidecar.metric("weir_kafka_shadow_dropped_records_total", &[("rule", "nowhere"), ("reason", "queue_full")]);
    assert!(full > 0.0, "the queue is bounded: copies past it are dropped at once");
    sidecar.assert_quiet_except(&["shadow copies dropped"]);
}
