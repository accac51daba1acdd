//! Byte-rate quotas through a real sidecar in front of the real cluster: clients over their
//! quota are told to back off (`throttle_time_ms`), see it in their own statistics, and still
//! deliver and read everything without an error; clients the quota does not name are never
//! throttled. The achieved rates are measured by bench/quota.sh, not here. Connection quotas
//! refuse a principal's connection too many and serve late those past their rate.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{java_client, rd, unique, Sidecar, SidecarOptions};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::Message;

/// 100 KB/s produced and 300 KB/s fetched for the two limited client ids; the other clients are not limited.
const QUOTAS: &str = r#"quotas:
  - name: slow-writer
    principals: ["*"]
    client_ids: [limited-writer]
    produce_bytes_per_second: 100000
  - name: slow-reader
    principals: ["*"]
    client_ids: [limited-reader]
    fetch_bytes_per_second: 300000
"#;

/// Keeps the largest broker throttle librdkafka reports in its statistics.
#[derive(Clone, Default)]
struct ThrottleSeen(Arc<AtomicI64>);

impl ClientContext for ThrottleSeen {
    fn stats(&self, statistics: Statistics) {
        for broker in statistics.brokers.values() {
            if let Some(throttle) = &broker.throttle {
                self.0.fetch_max(throttle.max, Ordering::Relaxed);
            }
        }
    }
}

impl ConsumerContext for ThrottleSeen {}

/// Runs the Java producer (`count` records, `extra` arguments) and returns the largest throttle
/// it reports (`produce-throttle-time-max`, ms).
fn java_throttle_max(bootstrap: &str, topic: &str, count: usize, extra: &[&str]) -> f64 {
    let count = count.to_string();
    let mut args = vec!["produce", "--bootstrap", bootstrap, "--topic", topic, "--count", &count, "--throttle-metrics"];
    args.extend_from_slice(extra);
    let lines = java_client(&args);
    let line = lines.iter().find(|l| l.starts_with("throttle-avg-ms=")).expect("throttle metrics printed");
    line.split("throttle-max-ms=").nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a number: {line}"))
}

fn throttled(sidecar: &Sidecar, api: &str) -> f64 {
    sidecar.metric("weir_kafka_throttled_responses_total", &[("api", api)])
}

async fn produce(producer: &FutureProducer<ThrottleSeen>, topic: &str, count: usize) {
    let value = vec![b'x'; 1000];
    let futures: Vec<_> = (0..count)
        .map(|i| {
            let key = format!("k-{i}");
            producer.send_result(FutureRecord::to(topic).key(&key).payload(&value)).expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await.expect("delivery future").unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_over_a_quota_are_throttled_without_errors_and_others_are_not() {
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: QUOTAS.into(), ..Default::default() });
    let bs = sidecar.bootstrap();
    let topic = unique("quota");
    rd::create_topic(&bs, &topic, 1).await;

    // An unlimited producer and consumer first: nothing is throttled.
    let unlimited: FutureProducer<ThrottleSeen> = rd::config(&bs)
        .set("client.id", "free-writer")
        .set("linger.ms", "5")
        .create_with_context(ThrottleSeen::default())
        .unwrap();
    produce(&unlimited, &topic, 400).await;
    assert_eq!(throttled(&sidecar, "Produce"), 0.0, "a client no quota names is not throttled");

    // librdkafka over its produce quota: ~400 KB at 100 KB/s.
    let seen = ThrottleSeen::default();
    let limited: FutureProducer<ThrottleSeen> = rd::config(&bs)
        .set("client.id", "limited-writer")
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "200")
        .create_with_context(seen.clone())
        .unwrap();
    produce(&limited, &topic, 400).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(throttled(&sidecar, "Produce") > 0.0, "the sidecar throttled the limited producer");
    assert!(
        sidecar
            .metric("weir_kafka_quota_throttled_requests_total", &[("quota", "slow-writer"), ("traffic", "produce")])
            > 0.0
    );
    assert!(seen.0.load(Ordering::Relaxed) > 0, "librdkafka saw throttle_time_ms in its produce responses");

    // The Java client's own metric shows the throttle too.
    let max = java_throttle_max(&bs, &topic, 300, &["--pad", "1000", "--property", "client.id=limited-writer"]);
    assert!(max > 0.0, "produce-throttle-time-max of the Java producer: {max}");

    // A consumer over its fetch quota (~1.2 MB at 300 KB/s) reads every record (1,100 written above) all the same.
    let before = throttled(&sidecar, "Fetch");
    let reader = ThrottleSeen::default();
    let consumer: BaseConsumer<ThrottleSeen> = rd::config(&bs)
        .set("client.id", "limited-reader")
        .set("group.id", unique("quota-readers"))
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "200")
        .create_with_context(reader.clone())
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read < 1100 {
        assert!(std::time::Instant::now() < deadline, "read {read} of 1100 records");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("no consumer error");
            assert!(message.payload().is_some());
            read += 1;
        }
    }
    // One more poll round for the statistics.
    let _ = consumer.poll(Duration::from_millis(500));
    assert!(throttled(&sidecar, "Fetch") > before, "the sidecar throttled the limited consumer");
    assert!(reader.0.load(Ordering::Relaxed) > 0, "librdkafka saw throttle_time_ms in its fetch responses");
    sidecar.assert_quiet();
}

/// Connection quotas: `max_connections` closes the one connection too many of a principal as
/// it opens (the others keep working, and a closed one frees its place); with
/// `connections_per_second`, a real client's connections past the rate are served late and
/// it still delivers everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_principal_past_its_connection_quota_is_refused_or_served_late() {
    use common::raw::{api_versions_request, call, closed_by_peer};
    use std::net::TcpStream;
    use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

    let quota = "quotas: [{name: three, principals: ['*'], max_connections: 3}]\n";
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: quota.into(), ..Default::default() });
    let connect = || {
        let stream = TcpStream::connect(sidecar.bootstrap()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    };
    let served = |stream: &mut TcpStream| {
        let answer: ApiVersionsResponse = call(stream, ApiKey::ApiVersions, 3, &api_versions_request());
        assert_eq!(answer.error_code, 0);
    };
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect()).collect();
    open.iter_mut().for_each(served);
    let mut fourth = connect();
    use std::io::Write;
    let _ = fourth.write_all(&common::raw::request(ApiKey::ApiVersions, 3, 1, &api_versions_request()));
    assert!(closed_by_peer(&mut fourth), "a fourth connection of one principal is closed");
    open.iter_mut().for_each(served);
    drop(open.pop());
    // The closed connection's place is free once the sidecar saw it close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect();
        let _ = again.write_all(&common::raw::request(ApiKey::ApiVersions, 3, 2, &api_versions_request()));
        match common::raw::read_frame(&mut again) {
            Ok(_) => break,
            Err(_) => assert!(std::time::Instant::now() < deadline, "no place freed by a closed connection"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sidecar.metric("weir_kafka_quota_throttled_requests_total", &[("quota", "three"), ("traffic", "connections")])
            >= 1.0
    );
    assert!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "connection_quota")]) >= 1.0);
    sidecar.assert_quiet();

    let rate = "quotas: [{name: slow-connects, principals: ['*'], connections_per_second: 1}]\n";
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: rate.into(), ..Default::default() });
    let topic = unique("conn-rate");
    rd::create_topic(&common::direct_bootstrap(), &topic, 3).await;
    // librdkafka opens the bootstrap connection and one to each partition leader at once.
    rd::produce(&rd::producer(&sidecar.bootstrap(), &[]), &topic, "v", 30).await;
    let late = ("traffic", "connection_rate");
    assert!(sidecar.metric("weir_kafka_quota_throttled_requests_total", &[("quota", "slow-connects"), late]) >= 1.0);
    sidecar.assert_quiet();
}

/// Request quotas (`request_percentage`): a client that sends one small request after
/// another takes more of the sidecar's time than its share, is told to back off in its
/// responses (librdkafka's statistics and the Java producer's `produce-throttle-time-max` show
/// it), loses nothing, and is held to its share; a client beside it that no rule names is
/// never throttled.
#[tokio::test(flavor = "multi_thread")]
async fn a_chatty_client_over_its_request_quota_is_held_to_its_share_and_others_are_not() {
    /// The share: 1 ms of sidecar time per second.
    const SHARE: f64 = 0.001;
    let quota = "quotas: [{name: chatty, principals: ['*'], client_ids: [chatty], request_percentage: 0.1}]\n";
    let sidecar = Sidecar::start_with(SidecarOptions { extra_yaml: quota.into(), ..Default::default() });
    let bs = sidecar.bootstrap();
    let topic = unique("request-quota");
    rd::create_topic(&bs, &topic, 1).await;
    let sequential = |client_id: &str, seen: &ThrottleSeen| -> FutureProducer<ThrottleSeen> {
        rd::config(&bs)
            .set("client.id", client_id)
            .set("linger.ms", "0")
            .set("statistics.interval.ms", "200")
            .create_with_context(seen.clone())
            .unwrap()
    };
    // One record per request, each after the last was acknowledged, for a while: how many
    // go depends on the build's speed, not how long the test takes.
    async fn one_by_one(producer: &FutureProducer<ThrottleSeen>, topic: &str, until: std::time::Instant) -> usize {
        let mut sent = 0;
        while std::time::Instant::now() < until {
            let key = format!("k-{sent}");
            producer
                .send(FutureRecord::to(topic).key(&key).payload("v"), Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("delivery {sent} failed: {e}"));
            sent += 1;
        }
        sent
    }
    let (chatty_seen, free_seen) = (ThrottleSeen::default(), ThrottleSeen::default());
    let (chatty, free) = (sequential("chatty", &chatty_seen), sequential("free", &free_seen));
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(6);
    // Meanwhile, the Java producer as the same client id (sharing its meter): one record per
    // request too (one-byte batches, one request in flight).
    let java = tokio::task::spawn_blocking({
        let (bs, topic) = (bs.clone(), topic.clone());
        move || {
            let properties = ["linger.ms=0", "batch.size=1", "max.in.flight.requests.per.connection=1"];
            let mut args = vec!["--property", "client.id=chatty"];
            properties.iter().for_each(|p| args.extend(["--property", p]));
            java_throttle_max(&bs, &topic, 20, &args)
        }
    });
    let (chatty_sent, free_sent) = tokio::join!(one_by_one(&chatty, &topic, until), one_by_one(&free, &topic, until));
    let java_max = java.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let used = sidecar.metric("weir_kafka_quota_request_seconds_total", &[("quota", "chatty")]);
    let over =
        sidecar.metric("weir_kafka_quota_throttled_requests_total", &[("quota", "chatty"), ("traffic", "request")]);
    // Held to its share: one second of credit, then the share of the time it ran.
    let allowed = SHARE * (elapsed + 1.0);
    eprintln!(
        "request quota: {used:.4} s of sidecar time in {elapsed:.1} s (allowed {allowed:.4} s); \
         {chatty_sent} requests held, {free_sent} free"
    );
    assert!(over > 0.0, "the chatty client went over its share");
    assert!(chatty_seen.0.load(Ordering::Relaxed) > 0, "librdkafka saw throttle_time_ms");
    assert_eq!(free_seen.0.load(Ordering::Relaxed), 0, "a client no rule names is not throttled");
    // (Beyond it: the debt of the last requests, not yet waited out when the run ends.)
    assert!(used <= allowed * 1.5, "held to its share");
    assert!(chatty_sent * 3 < free_sent, "the held client sent fewer requests than the free one");

    // The Java producer's own metric shows the throttle too.
    assert!(java_max > 0.0, "produce-throttle-time-max of the Java producer: {java_max}");
    let written = chatty_sent + free_sent + 20;
    let read = rd::consume(&common::direct_bootstrap(), &topic, &unique("request-quota-check"), written, &[]);
    assert_eq!(read.len(), written, "every record written once");
    sidecar.assert_quiet();
}
