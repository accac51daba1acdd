//! Real Kafka clients (librdkafka and the Java client) through a real sidecar in front of a
//! real 3-broker cluster whose brokers advertise addresses only the sidecar can resolve.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{java_client, rd, unique, Sidecar};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn expected(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn dup_headers() -> Vec<(String, String)> {
    vec![("dup".into(), "a".into()), ("dup".into(), "b".into())]
}

/// Parses `record partition=.. offset=.. key=.. value=.. headers=..` lines printed by the Java client.
fn java_records(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("record "))
        .map(|l| {
            let value = l.split(" value=").nth(1).and_then(|r| r.split(" headers=").next()).unwrap_or("").to_owned();
            let headers = l.split(" headers=").nth(1).unwrap_or("").to_owned();
            (value, headers)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_round_trips_every_codec_with_duplicate_header_keys() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    for codec in CODECS {
        let topic = unique(&format!("rd-{codec}"));
        rd::create_topic(&bs, &topic, 3).await;
        let producer = rd::producer(&bs, &[("compression.codec", codec)]);
        rd::produce(&producer, &topic, codec, 200).await;
        let got = rd::consume(&bs, &topic, &unique("rd-group"), 200, &[]);
        assert_eq!(rd::values(&got), expected(codec, 200), "codec {codec}");
        assert!(got.iter().all(|r| r.headers == dup_headers()), "codec {codec}: headers changed");
        assert!(sidecar.metric("weir_kafka_produced_records_total", &[("topic", &topic)]) >= 200.0);
        assert!(sidecar.metric("weir_kafka_fetched_records_total", &[("topic", &topic)]) >= 200.0);
    }
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn java_client_round_trips_every_codec_and_librdkafka_reads_it() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("java-codecs");
    java_client(&[
        "admin",
        "--bootstrap",
        &bs,
        "--op",
        "create-topic",
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--replication",
        "3",
    ]);
    let mut all = BTreeSet::new();
    for codec in CODECS {
        let out = java_client(&[
            "produce",
            "--bootstrap",
            &bs,
            "--topic",
            &topic,
            "--count",
            "50",
            "--compression",
            codec,
            "--prefix",
            codec,
        ]);
        assert!(out.contains(&"produced=50".to_owned()), "{out:?}");
        all.extend(expected(codec, 50));
    }
    let out = java_client(&["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "250"]);
    let records = java_records(&out);
    assert_eq!(records.iter().map(|(v, _)| v.clone()).collect::<BTreeSet<_>>(), all);
    assert!(records.iter().all(|(_, h)| h == "dup:a,dup:b"), "headers changed: {:?}", &records[..3]);
    // The other client library reads what the Java client wrote, duplicate header keys intact.
    let got = rd::consume(&bs, &topic, &unique("rd-group"), 250, &[]);
    assert_eq!(rd::values(&got), all);
    assert!(got.iter().all(|r| r.headers == dup_headers()));
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producers_write_each_record_once() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("idempotent");
    rd::create_topic(&bs, &topic, 3).await;
    let producer = rd::producer(&bs, &[("enable.idempotence", "true"), ("acks", "all")]);
    rd::produce(&producer, &topic, "rd", 300).await;
    let out = java_client(&[
        "produce",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        "100",
        "--idempotent",
        "--prefix",
        "java",
    ]);
    assert!(out.contains(&"produced=100".to_owned()));
    let got = rd::consume(&bs, &topic, &unique("g"), 400, &[]);
    let mut want = expected("rd", 300);
    want.extend(expected("java", 100));
    assert_eq!(rd::values(&got), want);
    assert_eq!(got.len(), 400, "duplicates were written");
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_commit_and_abort_with_both_clients() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("txn");
    rd::create_topic(&bs, &topic, 3).await;

    // Java: one committed, one aborted transaction; librdkafka read_committed sees the first only.
    let out = java_client(&[
        "txn",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--transactional-id",
        &unique("java-txn"),
        "--commit-count",
        "20",
        "--abort-count",
        "10",
    ]);
    assert!(out.contains(&"committed=20 aborted=10".to_owned()) || out.contains(&"committed=20".to_owned()), "{out:?}");

    // librdkafka: the same, read back by the Java client with read_committed.
    let producer = rd::producer(&bs, &[("transactional.id", &unique("rd-txn"))]);
    producer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    producer.begin_transaction().unwrap();
    rd::produce(&producer, &topic, "rd-committed", 15).await;
    producer.commit_transaction(Duration::from_secs(30)).expect("commit");
    producer.begin_transaction().unwrap();
    rd::produce(&producer, &topic, "rd-aborted", 5).await;
    producer.abort_transaction(Duration::from_secs(30)).expect("abort");

    let mut committed = expected("committed", 20);
    committed.extend(expected("rd-committed", 15));
    let got = rd::consume(&bs, &topic, &unique("g"), 35, &[("isolation.level", "read_committed")]);
    assert_eq!(rd::values(&got), committed);
    let out = java_client(&[
        "consume",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        "35",
        "--isolation",
        "read_committed",
    ]);
    let java_values: BTreeSet<String> = java_records(&out).into_iter().map(|(v, _)| v).collect();
    assert_eq!(java_values, committed);
    // read_uncommitted sees the aborted records too, so the abort really went through the log.
    let all = rd::consume(&bs, &topic, &unique("g"), 50, &[("isolation.level", "read_uncommitted")]);
    assert_eq!(all.len(), 50);
    sidecar.assert_quiet();
}

fn assigned(consumer: &rdkafka::consumer::BaseConsumer) -> BTreeSet<i32> {
    consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_group_rebalances_when_a_member_leaves() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("group");
    rd::create_topic(&bs, &topic, 4).await;
    let group = unique("group");
    let a = rd::consumer(&bs, &group, &[("session.timeout.ms", "10000")]);
    let b = rd::consumer(&bs, &group, &[("session.timeout.ms", "10000")]);
    a.subscribe(&[&topic]).unwrap();
    b.subscribe(&[&topic]).unwrap();
    let all: BTreeSet<i32> = (0..4).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        a.poll(Duration::from_millis(100));
        b.poll(Duration::from_millis(100));
        let (pa, pb) = (assigned(&a), assigned(&b));
        if !pa.is_empty() && !pb.is_empty() && pa.union(&pb).copied().collect::<BTreeSet<_>>() == all {
            assert!(pa.is_disjoint(&pb), "both members own a partition: {pa:?} {pb:?}");
            break;
        }
        assert!(Instant::now() < deadline, "group never split the partitions: {pa:?} {pb:?}");
    }
    drop(b); // closes the consumer, which leaves the group
    loop {
        a.poll(Duration::from_millis(100));
        if assigned(&a) == all {
            break;
        }
        assert!(Instant::now() < deadline, "remaining member never got all partitions: {:?}", assigned(&a));
    }

    // The Java client's group membership: a short-lived member leaves, the other takes over.
    let jgroup = unique("jgroup");
    let long = {
        let (bs, topic, jgroup) = (bs.clone(), topic.clone(), jgroup.clone());
        std::thread::spawn(move || {
            java_client(&[
                "group-member",
                "--bootstrap",
                &bs,
                "--topic",
                &topic,
                "--group",
                &jgroup,
                "--member-id-label",
                "long",
                "--duration-ms",
                "30000",
            ])
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    let short = java_client(&[
        "group-member",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--group",
        &jgroup,
        "--member-id-label",
        "short",
        "--duration-ms",
        "12000",
    ]);
    let long = long.join().unwrap();
    let assignments: Vec<&String> = long.iter().filter(|l| l.starts_with("assigned")).collect();
    assert_eq!(assignments.last().map(|s| s.as_str()), Some("assigned 0,1,2,3"), "long member: {long:?}");
    assert!(assignments.len() >= 3, "long member never shared the partitions: {long:?}");
    assert!(short.iter().any(|l| l.starts_with("assigned ") && l != "assigned "), "short member: {short:?}");
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_operations_with_both_clients() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("admin");
    rd::create_topic(&bs, &topic, 2).await;
    let admin = rd::admin(&bs);
    let configs = admin.describe_configs(&[ResourceSpecifier::Topic(&topic)], &AdminOptions::new()).await.unwrap();
    let config = configs.into_iter().next().unwrap().expect("describe configs");
    assert!(config.get("cleanup.policy").is_some(), "topic configs missing");
    let deleted = admin.delete_topics(&[&topic], &AdminOptions::new()).await.unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");

    // A group, so that listing groups has something to find.
    let group = unique("listed");
    let gtopic = unique("admin-groups");
    rd::create_topic(&bs, &gtopic, 1).await;
    rd::produce(&rd::producer(&bs, &[]), &gtopic, "x", 1).await;
    let consumer = rd::consumer(&bs, &group, &[]);
    consumer.subscribe(&[&gtopic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(consumer.poll(Duration::from_millis(200)), Some(Ok(_))) {
        assert!(Instant::now() < deadline, "group member never received the record");
    }
    let groups = consumer.fetch_group_list(None, Duration::from_secs(10)).expect("list groups");
    assert!(groups.groups().iter().any(|g| g.name() == group), "group {group} not listed");

    let jtopic = unique("jadmin");
    java_client(&[
        "admin",
        "--bootstrap",
        &bs,
        "--op",
        "create-topic",
        "--topic",
        &jtopic,
        "--partitions",
        "2",
        "--replication",
        "3",
    ]);
    let out = java_client(&["admin", "--bootstrap", &bs, "--op", "describe-configs", "--topic", &jtopic]);
    assert!(out.iter().any(|l| l.contains("cleanup.policy")), "{out:?}");
    let out = java_client(&["admin", "--bootstrap", &bs, "--op", "list-groups"]);
    assert!(out.iter().any(|l| l.contains(&group)), "{out:?}");
    java_client(&["admin", "--bootstrap", &bs, "--op", "delete-topic", "--topic", &jtopic]);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_only_ever_see_sidecar_addresses() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let ports: Vec<u16> = (1..=3).map(|n| sidecar.broker_port_base + n).collect();

    let out = java_client(&["admin", "--bootstrap", &bs, "--op", "describe-cluster"]);
    let nodes: Vec<&String> = out.iter().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(nodes.len(), 3, "{out:?}");
    for node in nodes {
        assert!(node.contains("host=127.0.0.1"), "{node}");
        assert!(ports.iter().any(|p| node.ends_with(&format!("port={p}"))), "{node} is not a sidecar port");
    }
    let consumer = rd::consumer(&bs, &unique("meta"), &[]);
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    for broker in metadata.brokers() {
        assert_eq!(broker.host(), "127.0.0.1");
        assert_eq!(broker.port(), sidecar.broker_port_base as i32 + broker.id());
    }

    // The same brokers, reached directly on the listener the sidecar uses, are unusable: their
    // advertised names do not resolve. That is what makes every other test a proof that no
    // client bypassed the sidecar.
    let topic = unique("unreachable");
    let refused = rd::produce_refused(&common::mesh_bootstrap(), &topic, &[]).await;
    refused.assert_heard(&[rd::RESOLVE, rd::ALL_BROKERS_DOWN], "a client reached the brokers without the sidecar");
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_led_by_different_brokers_use_several_sidecar_listeners() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("spread");
    rd::create_topic(&bs, &topic, 6).await;
    let producer = rd::producer(&bs, &[]);
    rd::produce(&producer, &topic, "v", 600).await;
    let got = rd::consume(&bs, &topic, &unique("g"), 600, &[]);
    assert_eq!(got.len(), 600);
    let metrics = sidecar.metrics();
    let used: Vec<u16> = (1..=3)
        .filter(|n| {
            common::metric_value(&metrics, "weir_connections_accepted_total", &[("listener", &format!("broker-{n}"))])
                > 0.0
        })
        .collect();
    assert_eq!(used, vec![1, 2, 3], "clients did not use every broker's listener:\n{metrics}");
    sidecar.assert_quiet();
}

/// The cluster's SASL listeners (PLAIN and SCRAM-SHA-512, user `weir`), advertised, like the
/// MESH ones, under names only the sidecar resolves.
fn sasl_bootstrap() -> String {
    (0..3).map(|i| format!("127.0.0.1:{}", 9095 + 10 * i)).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_exchanges_pass_through_to_a_sasl_cluster() {
    let sidecar = Sidecar::start_with(common::SidecarOptions { bootstrap: sasl_bootstrap(), ..Default::default() });
    let bs = sidecar.bootstrap();
    let plain = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "weir"),
        ("sasl.password", "weir-secret"),
    ];
    // librdkafka with SASL/PLAIN (the topic is created by the broker on first use).
    let topic = unique("sasl");
    let producer = rd::producer(&bs, &plain);
    rd::produce(&producer, &topic, "plain", 20).await;
    let got = rd::consume(&bs, &topic, &unique("g"), 20, &plain);
    assert_eq!(rd::values(&got), expected("plain", 20));

    // The Java client with SCRAM-SHA-512 (several round trips of SaslAuthenticate).
    let scram = [
        "--property", "security.protocol=SASL_PLAINTEXT",
        "--property", "sasl.mechanism=SCRAM-SHA-512",
        "--property",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"weir\" password=\"weir-secret\";",
    ];
    let mut args = vec!["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "10", "--prefix", "scram"];
    args.extend(scram);
    assert!(java_client(&args).contains(&"produced=10".to_owned()));
    let mut args = vec!["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "30"];
    args.extend(scram);
    let values: BTreeSet<String> = java_records(&java_client(&args)).into_iter().map(|(v, _)| v).collect();
    let mut want = expected("plain", 20);
    want.extend(expected("scram", 10));
    assert_eq!(values, want);

    // A wrong password is the broker's to refuse, and the client hears it.
    let wrong = [plain[0], plain[1], plain[2], ("sasl.password", "wrong")];
    rd::produce_refused(&bs, &topic, &wrong).await.assert_heard(&[rd::AUTHENTICATION], "a wrong password");
    // The broker closes connections that failed to authenticate; that is not the sidecar's fault.
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn large_fetch_responses_arrive_intact_with_both_clients() {
    // Fetch responses of megabytes are forwarded while they arrive (not after their last
    // byte); every record must still arrive whole and in order.
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("large");
    rd::create_topic(&bs, &topic, 1).await;
    let producer = rd::producer(&bs, &[("batch.size", "1000000"), ("linger.ms", "50")]);
    let payload = |i: usize| format!("{i:06}-{}", "x".repeat(2000));
    let futures: Vec<_> = (0..3000)
        .map(|i| {
            let value = payload(i);
            producer.send_result(rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload(&value)).expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await.expect("delivery future").unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }
    let got = rd::consume(&bs, &topic, &unique("g"), 3000, &[("fetch.max.bytes", "8000000")]);
    let values: Vec<String> = got.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, (0..3000).map(payload).collect::<Vec<_>>(), "librdkafka saw different records");
    let out = java_client(&["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "3000"]);
    let java: Vec<String> = java_records(&out).into_iter().map(|(v, _)| v).collect();
    assert_eq!(java, (0..3000).map(payload).collect::<Vec<_>>(), "the Java client saw different records");
    // Counted from the batch heads as the responses streamed through, never held whole.
    assert!(sidecar.metric("weir_kafka_fetched_bytes_total", &[("topic", &topic)]) >= 2.0 * 6_000_000.0);
    assert!(sidecar.metric("weir_kafka_fetched_records_total", &[("topic", &topic)]) >= 2.0 * 3000.0);
    assert!(sidecar.logs().iter().any(|l| l.contains("streaming a Fetch response")), "nothing was streamed");
    sidecar.assert_quiet();
}
