//! Leadership moves while a client produces and consumes: the brokers answer the stale client
//! with NOT_LEADER_OR_FOLLOWER plus the new leader's address (KIP-951 `NodeEndpoints` in
//! Produce v10+ / Fetch v16+), which the sidecar must rewrite like any other address. The
//! client follows the hint to the new leader's sidecar listener and nothing is lost. (Its own
//! binary: it moves partition leaders, which parallel scenarios should not see.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{direct_bootstrap, rd, repo_root, unique, Sidecar};
use rdkafka::consumer::Consumer;

fn kafka_tool(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts/kafka.sh")).arg("run").args(args).output().expect("kafka.sh run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `to` the leader of partition 0 by reordering the replicas and electing the preferred one.
fn move_leader(topic: &str, to: i32) {
    let others: Vec<i32> = (1..=3).filter(|b| *b != to).collect();
    let plan = format!(
        r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"replicas":[{to},{},{}]}}]}}"#,
        others[0], others[1]
    );
    let file = std::env::temp_dir().join(format!("{topic}-reassign.json"));
    std::fs::write(&file, plan).unwrap();
    let bs = direct_bootstrap();
    kafka_tool(&[
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
        "--bootstrap-server",
        &bs,
        "--reassignment-json-file",
        file.to_str().unwrap(),
        "--execute",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kafka_tool(&[
            "org.apache.kafka.tools.LeaderElectionCommand",
            "--bootstrap-server",
            &bs,
            "--election-type",
            "PREFERRED",
            "--topic",
            topic,
            "--partition",
            "0",
        ]);
        let described = kafka_tool(&[
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            &bs,
            "--describe",
            "--topic",
            topic,
        ]);
        if described.contains(&format!("Leader: {to}\t")) {
            break;
        }
        assert!(Instant::now() < deadline, "leader never moved to {to}: {out}\n{described}");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::remove_file(file).ok();
}

fn leader(consumer: &rdkafka::consumer::BaseConsumer, topic: &str) -> i32 {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics()[0].partitions()[0].leader()
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_hints_after_a_leadership_move_are_rewritten() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("hints");
    rd::create_topic(&bs, &topic, 1).await;
    let probe = rd::consumer(&bs, &unique("probe"), &[]);
    let first = leader(&probe, &topic);

    // Long metadata refresh, so the clients learn of the move from the brokers' hints rather
    // than from a periodic Metadata request.
    let slow_refresh = [("topic.metadata.refresh.interval.ms", "600000")];
    let producer = rd::producer(&bs, &slow_refresh);
    rd::produce(&producer, &topic, "before", 50).await;
    let consumer = rd::consumer(&bs, &unique("hints-reader"), &slow_refresh);
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 50 {
        assert!(Instant::now() < deadline, "consumed {seen} of 50 before the move");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
            seen += 1;
        }
    }

    let next = if first == 3 { 1 } else { first + 1 };
    move_leader(&topic, next);
    rd::produce(&producer, &topic, "after", 50).await;
    while seen < 100 {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "consumed {seen} of 100 after the move");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
            seen += 1;
        }
    }

    let rewritten = sidecar.metric("weir_kafka_address_rewrites_total", &[("api", "Produce")])
        + sidecar.metric("weir_kafka_address_rewrites_total", &[("api", "Fetch")]);
    assert!(rewritten >= 1.0, "no leader hint was rewritten:\n{}", sidecar.metrics());
    let accepted = sidecar.metric("weir_connections_accepted_total", &[("listener", &format!("broker-{next}"))]);
    assert!(accepted >= 1.0, "clients never reached the new leader through its sidecar listener");
    sidecar.assert_quiet();
}
