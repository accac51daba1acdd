//! Record transformation on produce (`transforms:`) through a real sidecar in front of the
//! real cluster: headers removed and lineage headers added to what librdkafka and Java
//! producers write (compressed, idempotent, transactional), the client unable to forge them,
//! every record's key, value and the producers' sequences intact.

mod common;

use common::raw::{batch_of, partition_zero, to_leader_of};
use common::{direct_bootstrap, java_client, rd, unique, Sidecar, SidecarOptions};
use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_wire::kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use weir_wire::kafka_protocol::protocol::StrBytes;

fn header<'a>(record: &'a rd::Consumed, key: &str) -> Vec<&'a str> {
    record.headers.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lineage_headers_are_added_to_every_record_and_cannot_be_forged() {
    let prefix = unique("lineage");
    let (orders, other) = (format!("{prefix}-orders"), format!("{prefix}-other"));
    let extra_yaml = format!(
        "fixed_principal: 'User:orders-svc'
transforms:
  - name: lineage
    topics: ['{orders}']
    produce:
      remove_headers: [secret]
      add_headers: {{weir-producer: '{{principal}}', weir-client: '{{client_id}}', weir-topic: '{{topic}}', weir-at: '{{time}}'}}
"
    );
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml, ..Default::default() });
    let bs = sidecar.bootstrap();
    for topic in [&orders, &other] {
        rd::create_topic(&direct_bootstrap(), topic, 1).await;
    }
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    // librdkafka, lz4, client id `lineage-app`: 20 records with headers dup: a, dup: b.
    let producer = rd::producer(&bs, &[("compression.type", "lz4"), ("client.id", "lineage-app")]);
    rd::produce(&producer, &orders, "rd", 20).await;
    // The Java client, idempotent, zstd (its sequence must hold across the rewrite): 100.
    let args = ["produce", "--bootstrap", &bs, "--topic", &orders, "--count", "100", "--idempotent"];
    let lines = java_client(&[&args[..], &["--compression", "zstd"]].concat());
    assert!(lines.iter().any(|l| l == "produced=100"), "{lines:?}");
    // A transaction committed and one aborted.
    let txn = ["txn", "--bootstrap", &bs, "--topic", &orders, "--transactional-id", &unique("txn")];
    let lines = java_client(&[&txn[..], &["--commit-count", "10", "--abort-count", "5"]].concat());
    assert!(lines.iter().any(|l| l == "committed=10 aborted=5"), "{lines:?}");
    // A raw batch forging the lineage header and carrying a secret.
    let forged = batch_of(&[(b"forged", &[("weir-producer", b"User:admin"), ("secret", b"s3cr3t"), ("keep", b"k")])]);
    let part = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(orders.clone())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(forged))]);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![part]);
    let answer: ProduceResponse = common::raw::call(&mut to_leader_of(&sidecar, &orders), ApiKey::Produce, 9, &produce);
    assert_eq!(answer.responses[0].partition_responses[0].error_code, 0);
    // A topic no rule covers: untouched.
    let answer: ProduceResponse = common::raw::call(
        &mut to_leader_of(&sidecar, &other),
        ApiKey::Produce,
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![partition_zero(&other, b"plain")]),
    );
    assert_eq!(answer.responses[0].partition_responses[0].error_code, 0);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    // Read directly, committed only: 20 + 100 + 10 + 1, each with the lineage.
    let records =
        rd::consume(&direct_bootstrap(), &orders, &unique("check"), 131, &[("isolation.level", "read_committed")]);
    assert_eq!(records.len(), 131);
    assert!(records.iter().all(|r| !r.value.starts_with("aborted")), "an aborted record was read");
    for record in &records {
        assert_eq!(header(record, "weir-producer"), ["User:orders-svc"], "{record:?}");
        assert_eq!(header(record, "weir-topic"), [orders.as_str()]);
        let at: i64 = header(record, "weir-at")[0].parse().unwrap();
        assert!((before..=after).contains(&at), "{at} not within the test");
        assert!(header(record, "secret").is_empty(), "{record:?}");
    }
    let rd_record = records.iter().find(|r| r.value == "rd-0").unwrap();
    assert_eq!(header(rd_record, "weir-client"), ["lineage-app"]);
    assert_eq!(header(rd_record, "dup"), ["a", "b"], "the client's own headers kept, repeated keys too");
    assert_eq!(rd_record.key, "k-0");
    let forged = records.iter().find(|r| r.value == "forged").unwrap();
    assert_eq!((header(forged, "keep"), header(forged, "weir-client")), (vec!["k"], vec!["wire-test"]));
    let java: Vec<&str> = records.iter().filter(|r| r.value.starts_with("value-")).map(|r| r.value.as_str()).collect();
    assert_eq!(java.len(), 100);
    assert_eq!(java[99], "value-99", "the idempotent producer's records in order");

    let plain = rd::consume(&direct_bootstrap(), &other, &unique("check"), 1, &[]);
    assert!(plain[0].headers.is_empty(), "{plain:?}");
    sidecar.assert_quiet();
}

/// A record of the fetch test: every third from offset 0 is from the US, and every fifth
/// carries `test: yes`; all carry a secret header and personal fields.
fn order_value(i: usize) -> String {
    let region = if i.is_multiple_of(3) { "us" } else { "eu" };
    let pad = ".".repeat(900);
    format!(
        r#"{{"n":{i},"region":"{region}","email":"user{i}@example.com","card":{{"number":"4111-{i}","cvc":"{i}"}},"pad":"{pad}"}}"#
    )
}

/// Whether the analysts' rule keeps record `i`.
fn analysts_read(i: usize) -> bool {
    !i.is_multiple_of(3) && !i.is_multiple_of(5)
}

/// Reads `count` records from `topic` as group `group` (librdkafka), committing the last one
/// read; returns (offset, value, headers) of each.
fn rd_read_and_commit(bootstrap: &str, topic: &str, group: &str, count: usize) -> Vec<(i64, String, Vec<String>)> {
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer = rd::consumer(bootstrap, group, &[("enable.auto.commit", "false")]);
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(std::time::Instant::now() < deadline, "read only {} of {count}", out.len());
        let Some(message) = consumer.poll(std::time::Duration::from_millis(200)) else { continue };
        let message = message.expect("a record");
        let headers = message.headers().map(|h| h.iter().map(|h| h.key.to_owned()).collect()).unwrap_or_default();
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        out.push((message.offset(), value, headers));
        if out.len() == count {
            consumer.commit_message(&message, CommitMode::Sync).unwrap();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_read_masked_filtered_records_at_their_offsets_and_resume_from_commits() {
    let topic = unique("fetch-view");
    let extra = |principal: &str| {
        format!(
            "fixed_principal: '{principal}'
transforms:
  - name: analysts
    topics: ['{topic}']
    principals: ['User:analyst']
    fetch:
      remove_headers: [secret]
      mask:
        - {{path: '$.card', replace: {{number: '****'}}}}
        - {{path: '$.email', hash: true}}
      drop_if: 'json(\"$.region\") == \"us\" || header(\"test\") == \"yes\"'
"
        )
    };
    let analyst = Sidecar::start_with(SidecarOptions { extra_yaml: extra("User:analyst"), ..Default::default() });
    let owner = Sidecar::start_with(SidecarOptions { extra_yaml: extra("User:owner"), ..Default::default() });
    rd::create_topic(&direct_bootstrap(), &topic, 1).await;

    // 598 records of ~1 KiB written directly, lz4, in batches of many: the last one (597) is
    // taken out, so the analysts' view of the log ends in a gap.
    const COUNT: usize = 598;
    let producer = rd::producer(&direct_bootstrap(), &[("compression.type", "lz4"), ("linger.ms", "50")]);
    let futures: Vec<_> = (0..COUNT)
        .map(|i| {
            use rdkafka::message::{Header, OwnedHeaders};
            let (value, key) = (order_value(i), format!("k-{i}"));
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: "secret", value: Some(format!("s-{i}").as_str()) })
                .insert(Header { key: "trace", value: Some("t") });
            if i.is_multiple_of(5) {
                headers = headers.insert(Header { key: "test", value: Some("yes") });
            }
            producer
                .send_result(rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&value).headers(headers))
                .unwrap()
        })
        .collect();
    for f in futures {
        f.await.unwrap().unwrap();
    }
    let kept: Vec<i64> = (0..COUNT).filter(|&i| analysts_read(i)).map(|i| i as i64).collect();
    let email_hash = |i: i64| {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("\"user{i}@example.com\"").as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let expected_value = |i: i64| {
        let pad = ".".repeat(900);
        format!(
            r#"{{"n":{i},"region":"eu","email":"sha256:{}","card":{{"number":"****"}},"pad":"{pad}"}}"#,
            email_hash(i)
        )
    };

    // librdkafka: 100 records, committed; a new consumer of the group resumes after them.
    let group = unique("rd-analysts");
    let first = rd_read_and_commit(&analyst.bootstrap(), &topic, &group, 100);
    let rest = rd_read_and_commit(&analyst.bootstrap(), &topic, &group, kept.len() - 100);
    let read: Vec<&(i64, String, Vec<String>)> = first.iter().chain(&rest).collect();
    assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), kept, "every kept record once, at its own offset");
    for (offset, value, headers) in &read {
        assert_eq!(value, &expected_value(*offset));
        assert_eq!(headers, &["trace"], "the secret header removed");
    }

    // Java: 150 records committed, then the rest from the commit.
    let parse = |lines: Vec<String>| -> Vec<(i64, String)> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("record partition=0 offset="))
            .map(|l| {
                let (offset, rest) = l.split_once(' ').unwrap();
                let value = rest.split(" value=").nth(1).unwrap().split(" headers=").next().unwrap();
                (offset.parse().unwrap(), value.to_owned())
            })
            .collect()
    };
    let group = unique("java-analysts");
    let java = |count: usize| {
        let count = count.to_string();
        java_client(&[
            "consume",
            "--bootstrap",
            &analyst.bootstrap(),
            "--topic",
            &topic,
            "--group",
            &group,
            "--count",
            &count,
        ])
    };
    let mut read = parse(java(150));
    read.extend(parse(java(kept.len() - 150)));
    assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), kept, "Java: every kept record once, at its offset");
    assert!(read.iter().all(|(offset, value)| *value == expected_value(*offset)));

    // Another principal reads the log as it was written.
    let all = rd_read_and_commit(&owner.bootstrap(), &topic, &unique("owners"), COUNT);
    assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), (0..COUNT as i64).collect::<Vec<_>>());
    assert!(all.iter().all(|(i, value, headers)| *value == order_value(*i as usize) && headers[0] == "secret"));

    let dropped =
        analyst.metric("weir_kafka_fetch_transformed_records_total", &[("rule", "analysts"), ("outcome", "dropped")]);
    assert!(dropped >= (COUNT - kept.len()) as f64, "{dropped}");
    analyst.assert_quiet();
    owner.assert_quiet();
}
