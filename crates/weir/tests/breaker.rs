//! Circuit breaking per broker against the real cluster: with one request in flight allowed
//! per broker, producers past the limit either wait for a slot (`queue`) or have their
//! produce failed at once with a retriable error and nothing written (`reject`); either way
//! every record is delivered exactly once, and the metrics count what happened.

mod common;

use common::{direct_bootstrap, java_client, rd, unique, Sidecar, SidecarOptions};

fn breaker(when_full: &str) -> Sidecar {
    let upstream_yaml = format!("  circuit_breaker: {{max_requests_per_broker: 1, when_full: {when_full}}}\n");
    Sidecar::start_with(SidecarOptions { upstream_yaml, ..Default::default() })
}

fn over_limit(sidecar: &Sidecar, action: &str) -> f64 {
    sidecar.metric("weir_kafka_upstream_requests_over_limit_total", &[("action", action)])
}

/// Two producers at once through the sidecar, then every record read back from the cluster.
async fn produce_concurrently(sidecar: &Sidecar, topic: &str) {
    let bs = sidecar.bootstrap();
    rd::create_topic(&direct_bootstrap(), topic, 6).await;
    let java_bs = bs.clone();
    let java_topic = topic.to_owned();
    let java = std::thread::spawn(move || {
        java_client(&[
            "produce",
            "--bootstrap",
            &java_bs,
            "--topic",
            &java_topic,
            "--count",
            "2000",
            "--prefix",
            "java",
            "--idempotent",
            "--timeout-ms",
            "120000",
            "--property",
            "batch.size=1000",
            "--property",
            "linger.ms=0",
        ])
    });
    let producer = rd::producer(&bs, &[("enable.idempotence", "true"), ("batch.num.messages", "20")]);
    rd::produce(&producer, topic, "rd", 2000).await;
    let java = java.join().unwrap();
    assert!(java.iter().any(|l| l == "produced=2000"), "{java:?}");
    let records = rd::consume(&direct_bootstrap(), topic, &unique("breaker"), 4000, &[]);
    assert_eq!(rd::values(&records).len(), 4000, "every record once");
}

#[tokio::test(flavor = "multi_thread")]
async fn producers_over_a_brokers_request_limit_wait_or_are_told_to_retry_and_lose_nothing() {
    let queueing = breaker("queue");
    produce_concurrently(&queueing, &unique("queued")).await;
    assert!(over_limit(&queueing, "queued") > 0.0, "{}", queueing.metrics());
    assert_eq!(over_limit(&queueing, "rejected"), 0.0);
    queueing.assert_quiet();

    let rejecting = breaker("reject");
    produce_concurrently(&rejecting, &unique("rejected")).await;
    assert!(over_limit(&rejecting, "rejected") > 0.0, "{}", rejecting.metrics());
    rejecting.assert_quiet();
}

/// With one connection allowed per broker, a second client connection to the same broker is
/// closed at once (`reject`) or waits until the first closes (`queue`).
#[test]
fn past_a_brokers_connection_limit_a_client_connection_is_closed_or_waits() {
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use common::raw;
    use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

    for when_full in ["reject", "queue"] {
        let upstream_yaml = format!("  circuit_breaker: {{max_connections_per_broker: 1, when_full: {when_full}}}\n");
        let sidecar = Sidecar::start_with(SidecarOptions { upstream_yaml, ..Default::default() });
        // Broker 1's port on the sidecar: both connections need that one broker.
        let broker = SocketAddr::new(sidecar.addr.ip(), sidecar.broker_port_base + 1);
        let versions = |stream: &mut TcpStream| {
            let answer: ApiVersionsResponse = raw::call(stream, ApiKey::ApiVersions, 3, &raw::api_versions_request());
            assert_eq!(answer.error_code, 0);
        };
        let mut first = TcpStream::connect(broker).unwrap();
        versions(&mut first);

        let mut second = TcpStream::connect(broker).unwrap();
        if when_full == "reject" {
            second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert!(raw::closed_by_peer(&mut second), "reject: the second connection is closed");
        } else {
            use std::io::Write;
            second.write_all(&raw::request(ApiKey::ApiVersions, 3, 7, &raw::api_versions_request())).unwrap();
            second.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            assert!(raw::read_frame(&mut second).is_err(), "queue: no answer while the first holds the place");
        }
        drop(first);
        if when_full == "reject" {
            // The place is free once the sidecar has seen the first connection close.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut again = TcpStream::connect(broker).unwrap();
                again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                use std::io::Write;
                again.write_all(&raw::request(ApiKey::ApiVersions, 3, 8, &raw::api_versions_request())).unwrap();
                if raw::read_frame(&mut again).is_ok() {
                    break;
                }
                assert!(Instant::now() < deadline, "the place never came free");
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            raw::read_frame(&mut second).expect("queue: answered once the first closed");
        }
        let action = if when_full == "reject" { "rejected" } else { "queued" };
        let counted = sidecar.metric("weir_kafka_upstream_connections_over_limit_total", &[("action", action)]);
        assert!(counted >= 1.0, "{when_full}: {counted}");
        sidecar.assert_quiet();
    }
}
