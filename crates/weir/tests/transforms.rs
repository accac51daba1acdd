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
