//! A broker restart in the middle of a stream: the sidecar reconnects, the clients recover, and
//! nothing acknowledged is lost or duplicated. A broker that stops answering (paused): with a
//! request timeout, its clients' connections are closed instead of hanging. Its own test
//! binary, because stopping a broker would disturb scenarios running in parallel.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{api_versions_request, call, closed_by_peer, request};
use common::{rd, repo_root, unique, Sidecar, SidecarOptions};
use rdkafka::producer::FutureRecord;
use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// A change to one broker, undone when dropped (`stop-broker` by `start-broker`,
/// `pause-broker` by `resume-broker`), so that a failing test does not leave the cluster
/// degraded.
struct BrokerChanged {
    node: u32,
    undo: &'static str,
}

impl BrokerChanged {
    fn by(change: &str, undo: &'static str, node: u32) -> Self {
        kafka_sh(&[change, &node.to_string()]);
        Self { node, undo }
    }
}

impl Drop for BrokerChanged {
    fn drop(&mut self) {
        kafka_sh(&[self.undo, &self.node.to_string()]);
    }
}

/// Held by each test while it changes a broker: the tests of this file run side by side, and
/// a broker one of them pauses would fail the other's requests (a topic creation retried
/// after a timeout finds its topic already made).
static CHANGING_THE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn kafka_sh(args: &[&str]) {
    let status = Command::new(repo_root().join("scripts/kafka.sh")).args(args).status().expect("kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let _alone = CHANGING_THE_CLUSTER.lock().await;
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("restart");
    rd::create_topic(&bs, &topic, 3).await;
    let producer = Arc::new(rd::producer(
        &bs,
        &[("enable.idempotence", "true"), ("acks", "all"), ("message.timeout.ms", "120000"), ("linger.ms", "10")],
    ));

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (producer, topic, running) = (producer.clone(), topic.clone(), running.clone());
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut i = 0u64;
            while running.load(Ordering::Relaxed) {
                let value = format!("r-{i}");
                let future = producer.send_result(FutureRecord::<(), _>::to(&topic).payload(&value)).expect("enqueue");
                deliveries.push((value, future));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut acked = BTreeSet::new();
            for (value, future) in deliveries {
                match future.await.expect("delivery future") {
                    Ok(_) => {
                        acked.insert(value);
                    }
                    Err((e, _)) => panic!("record {value} was not delivered: {e}"),
                }
            }
            (i, acked)
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = BrokerChanged::by("stop-broker", "start-broker", 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(stopped); // starts broker 2 again
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.store(false, Ordering::Relaxed);
    let (sent, acked) = writer.await.unwrap();
    assert_eq!(acked.len() as u64, sent, "every record must be acknowledged");
    assert!(sent > 500, "the stream was too thin to mean anything: {sent} records");

    let got =
        rd::consume(&bs, &topic, &unique("restart-reader"), acked.len(), &[("isolation.level", "read_committed")]);
    assert_eq!(got.len(), acked.len(), "duplicates or losses");
    assert_eq!(rd::values(&got), acked);

    // Expected noise while broker 2 is down: connections to it fail and are closed.
    sidecar.assert_quiet_except(&["cannot connect to", "broker closed the connection", "Connection reset"]);
}

#[test]
fn a_broker_that_stops_answering_has_its_client_connections_closed_after_the_request_timeout() {
    let _alone = CHANGING_THE_CLUSTER.blocking_lock();
    use std::io::Write;
    let upstream_yaml = "  circuit_breaker: {request_timeout_ms: 2000}\n".to_owned();
    let sidecar = Sidecar::start_with(SidecarOptions { upstream_yaml, ..Default::default() });
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sidecar.broker_port_base + 2)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let answer: ApiVersionsResponse = call(&mut stream, ApiKey::ApiVersions, 3, &api_versions_request());
    assert_eq!(answer.error_code, 0, "broker 2 answers while it runs");

    let paused = BrokerChanged::by("pause-broker", "resume-broker", 2);
    stream.write_all(&request(ApiKey::ApiVersions, 3, 7, &api_versions_request())).unwrap();
    assert!(closed_by_peer(&mut stream), "the connection is closed, not left hanging");
    drop(paused);
    assert_eq!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "upstream_timeout")]), 1.0);
    sidecar.assert_quiet_except(&["did not answer ApiVersions within 2s"]);
}
