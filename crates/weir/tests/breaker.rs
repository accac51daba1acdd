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
