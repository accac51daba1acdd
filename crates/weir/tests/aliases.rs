//! Topic aliases through a real sidecar in front of the real cluster: a workload whose code
//! says `orders` reads, commits and writes `orders-v2` instead, with every answer in its own
//! names, as librdkafka and Java clients (classic and KIP-848 groups) see it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{direct_bootstrap, java_client, rd, unique, Sidecar, SidecarOptions};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

struct Topics {
    old: String,
    new: String,
}

async fn topics_and_sidecar() -> (Topics, Sidecar) {
    let topics = Topics { old: unique("orders"), new: unique("orders-v2") };
    let aliases = format!("topic_aliases:\n  - {{topic: {}, to: {}}}\n", topics.old, topics.new);
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: aliases, ..Default::default() });
    rd::create_topic(&direct_bootstrap(), &topics.old, 3).await;
    rd::create_topic(&direct_bootstrap(), &topics.new, 2).await;
    let direct = rd::producer(&direct_bootstrap(), &[]);
    rd::produce(&direct, &topics.old, "old", 100).await;
    rd::produce(&direct, &topics.new, "new", 100).await;
    (topics, sidecar)
}

/// Reads `count` records of `topic` as `group` through `bootstrap` and commits them.
fn consume_and_commit(bootstrap: &str, topic: &str, group: &str, count: usize) -> Vec<String> {
    let consumer = rd::consumer(bootstrap, group, &[("enable.auto.commit", "false")]);
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} records of {topic}", values.len());
        if let Some(record) = consumer.poll(Duration::from_millis(200)) {
            let record = record.expect("consume");
            assert_eq!(record.topic(), topic, "the client hears its own name");
            values.push(String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned());
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    values
}

/// The offsets `group` committed on `topic`, asked of the cluster directly.
fn committed(topic: &str, partitions: i32, group: &str) -> i64 {
    let consumer = rd::consumer(&direct_bootstrap(), group, &[]);
    let mut list = TopicPartitionList::new();
    (0..partitions).for_each(|p| {
        list.add_partition(topic, p);
    });
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    committed.elements().iter().filter_map(|e| if let Offset::Offset(o) = e.offset() { Some(o) } else { None }).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_pointed_at_another_topic_read_and_commit_it_under_the_old_name() {
    let (topics, sidecar) = topics_and_sidecar().await;
    let bs = sidecar.bootstrap();

    // librdkafka, classic group.
    let values = consume_and_commit(&bs, &topics.old, "rd-group", 100);
    assert!(values.iter().all(|v| v.starts_with("new-")), "{values:?}");
    assert_eq!(committed(&topics.new, 2, "rd-group"), 100, "committed on the cluster's topic");
    assert_eq!(committed(&topics.old, 3, "rd-group"), 0, "nothing committed on the aliased one");

    // Java, classic and KIP-848 groups; the second run of a group resumes where it committed.
    for protocol in ["classic", "consumer"] {
        let group = format!("java-{protocol}");
        let run = |count: usize| {
            let out = java_client(&[
                "consume",
                "--bootstrap",
                &bs,
                "--topic",
                &topics.old,
                "--group",
                &group,
                "--group-protocol",
                protocol,
                "--count",
                &count.to_string(),
            ]);
            out.into_iter().filter(|l| l.starts_with("record ")).collect::<Vec<_>>()
        };
        let first = run(60);
        assert!(first.iter().all(|l| l.contains("value=new-")), "{protocol}: {first:?}");
        let rest = run(40);
        assert!(rest.iter().all(|l| l.contains("value=new-")), "{protocol}: {rest:?}");
        let mut all: Vec<&String> = first.iter().chain(&rest).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100, "{protocol}: the second run resumed where the first committed");
        assert_eq!(committed(&topics.new, 2, &group), 100, "{protocol}");
    }

    // Metadata of every topic names the old name once (the cluster's other topic behind it)
    // and never the new one.
    let consumer = rd::consumer(&bs, "metadata", &[]);
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let named: Vec<_> =
        metadata.topics().iter().filter(|t| [&topics.old, &topics.new].contains(&&t.name().to_owned())).collect();
    assert_eq!(named.len(), 1);
    assert_eq!((named[0].name(), named[0].partitions().len()), (topics.old.as_str(), 2), "the new topic's partitions");
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_pointed_at_another_topic_writes_there_and_its_offsets_are_where_the_records_went() {
    let (topics, sidecar) = topics_and_sidecar().await;
    let producer = rd::producer(&sidecar.bootstrap(), &[("enable.idempotence", "true")]);
    let mut delivered = BTreeMap::new();
    for i in 0..50 {
        let value = format!("canary-{i}");
        let record = FutureRecord::to(&topics.old).key("k").payload(&value);
        let delivery = producer.send(record, Duration::from_secs(30)).await.expect("delivered");
        delivered.insert(value, (delivery.partition, delivery.offset));
    }

    // Read straight from the cluster: every record in the new topic, where the client was told.
    let consumer = rd::consumer(&direct_bootstrap(), &unique("read-back"), &[]);
    consumer.subscribe(&[&topics.new]).expect("subscribe");
    let mut found = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while found.len() < 50 {
        assert!(Instant::now() < deadline, "found {} of 50 canary records", found.len());
        if let Some(record) = consumer.poll(Duration::from_millis(200)) {
            let record = record.expect("consume");
            let value = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
            if value.starts_with("canary-") {
                found.insert(value, (record.partition(), record.offset()));
            }
        }
    }
    assert_eq!(found, delivered);
    let old = rd::consume(&direct_bootstrap(), &topics.old, &unique("read-old"), 100, &[]);
    assert!(old.iter().all(|r| r.value.starts_with("old-")), "nothing written to the aliased topic");
    sidecar.assert_quiet();
}

/// A request whose body lies about its length, from a client under an alias, closes that
/// connection (the rename's walk refuses it) and no other.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_from_an_aliased_client_closes_only_its_connection() {
    use common::raw;
    use weir_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use weir_wire::kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
    use weir_wire::kafka_protocol::protocol::StrBytes;

    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: "topic_aliases:\n  - {topic: orders, to: orders-v2}\n".into(),
        ..Default::default()
    });
    let name = TopicName(StrBytes::from_static_str("orders"));
    let metadata =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name))]));
    let mut frame = raw::request(ApiKey::Metadata, 12, 1, &metadata);
    frame.truncate(frame.len() - 3);
    let length = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&length.to_be_bytes());

    raw::assert_closes_only_its_connection(&sidecar, &frame);
    // The one warning says what was wrong and where.
    sidecar.assert_quiet_except(&["malformed Metadata request v12 at byte 25 of the body: truncated"]);
}
