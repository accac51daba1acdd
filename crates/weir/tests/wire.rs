//! The sidecar at the byte level, against the real cluster: pipelining, `acks=0`, ApiVersions
//! negotiation, bad input of every kind, admin endpoints, shutdown and config errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::raw::{api_versions_request, closed_by_peer, one_record_batch, read_frame, request};
use common::{rd, unique, Sidecar};
use weir_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceRequest, SaslHandshakeRequest, TopicName,
};
use weir_wire::kafka_protocol::protocol::StrBytes;
use weir_wire::message::decode_response;

fn connect(sidecar: &Sidecar) -> TcpStream {
    let stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_come_back_in_order_and_acks_zero_gets_no_response() {
    let sidecar = Sidecar::start();
    let topic = unique("pipeline");
    rd::create_topic(&sidecar.bootstrap(), &topic, 1).await;
    // The partition leader's own listener: produce must go to the leader.
    let consumer = rd::consumer(&sidecar.bootstrap(), &unique("g"), &[]);
    // A topic just created may have no leader yet (and a broker closes the connection of an
    // acks=0 produce it cannot take): wait until its partition has one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let md = rdkafka::consumer::Consumer::fetch_metadata(&consumer, Some(&topic), Duration::from_secs(10));
        let leader = md.ok().and_then(|md| {
            let partition = md.topics().first()?.partitions().first()?;
            (partition.error().is_none() && partition.leader() >= 0).then_some(partition.leader())
        });
        match leader {
            Some(leader) => break leader,
            None if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            None => panic!("topic {topic} has no leader after 30 s"),
        }
    };
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.broker_port_base + leader as u16)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let produce =
        ProduceRequest::default().with_acks(0).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(one_record_batch()))])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![]));
    // One write carrying five requests, the middle ones fire-and-forget produces.
    let mut burst = request(ApiKey::ApiVersions, 3, 1, &api_versions_request());
    burst.extend(request(ApiKey::Metadata, 12, 2, &metadata));
    burst.extend(request(ApiKey::Produce, 9, 3, &produce));
    burst.extend(request(ApiKey::Produce, 9, 4, &produce));
    burst.extend(request(ApiKey::Metadata, 9, 5, &metadata));
    stream.write_all(&burst).unwrap();

    let expected = [(1, ApiKey::ApiVersions, 3), (2, ApiKey::Metadata, 12), (5, ApiKey::Metadata, 9)];
    for (correlation_id, key, version) in expected {
        let frame = read_frame(&mut stream).unwrap();
        let id = weir_wire::header::response_correlation_id(&frame).unwrap();
        assert_eq!(id, correlation_id, "responses out of order");
        if key == ApiKey::Metadata {
            let (_, md): (_, MetadataResponse) = decode_response(&frame, key, version).unwrap();
            assert_eq!(md.brokers.len(), 3);
            assert!(md.brokers.iter().all(|b| b.host.as_str() == "127.0.0.1"));
        }
    }
    // Nothing else is owed: the next read times out rather than yielding a stray response.
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
    );
    // Both acks=0 records really reached the log.
    let got = rd::consume(&sidecar.bootstrap(), &topic, &unique("g"), 2, &[]);
    assert!(got.iter().all(|r| r.value == "acks-zero"));
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn api_versions_are_narrowed_to_what_the_sidecar_handles_and_kip_511_is_honoured() {
    let sidecar = Sidecar::start();
    let mut stream = connect(&sidecar);
    stream.write_all(&request(ApiKey::ApiVersions, 3, 7, &api_versions_request())).unwrap();
    let frame = read_frame(&mut stream).unwrap();
    let (_, resp): (_, ApiVersionsResponse) = decode_response(&frame, ApiKey::ApiVersions, 3).unwrap();
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.len() > 20, "too few api keys: {}", resp.api_keys.len());
    for entry in &resp.api_keys {
        let key = ApiKey::try_from(entry.api_key).expect("only known api keys are advertised");
        let known = key.valid_versions();
        assert!(entry.min_version >= known.min && entry.max_version <= known.max, "{key:?} {entry:?}");
    }
    // Requests only brokers send each other are not offered to clients.
    assert!(!resp.api_keys.iter().any(|e| e.api_key == ApiKey::WriteTxnMarkers as i16));
    let handshake = resp.api_keys.iter().find(|e| e.api_key == ApiKey::SaslHandshake as i16);
    assert!(handshake.is_none_or(|e| e.min_version >= 1));

    // A version from the future: a v0-format answer with UNSUPPORTED_VERSION, and the
    // connection stays usable for the retry.
    let mut future = request(ApiKey::ApiVersions, 3, 8, &api_versions_request());
    future[6..8].copy_from_slice(&99i16.to_be_bytes());
    stream.write_all(&future).unwrap();
    let frame = read_frame(&mut stream).unwrap();
    let (header, resp): (_, ApiVersionsResponse) = decode_response(&frame, ApiKey::ApiVersions, 0).unwrap();
    assert_eq!(header.correlation_id, 8);
    assert_eq!(resp.error_code, 35);
    assert_eq!(resp.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    stream.write_all(&request(ApiKey::ApiVersions, 3, 9, &api_versions_request())).unwrap();
    assert_eq!(weir_wire::header::response_correlation_id(&read_frame(&mut stream).unwrap()), Some(9));
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_closes_only_the_offending_connection() {
    let sidecar = Sidecar::start();
    let bs = sidecar.bootstrap();
    let topic = unique("survivor");
    rd::create_topic(&bs, &topic, 1).await;
    let producer = rd::producer(&bs, &[]);
    rd::produce(&producer, &topic, "before", 10).await;

    let mut unknown_key = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    unknown_key[4..6].copy_from_slice(&31999i16.to_be_bytes());
    let mut unknown_version = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    unknown_version[6..8].copy_from_slice(&77i16.to_be_bytes());
    // A Produce request whose topic array claims 2^31-1 entries: must not make the sidecar
    // try to allocate for them.
    let mut hostile_produce = request(ApiKey::Produce, 8, 1, &ProduceRequest::default());
    let at = hostile_produce.len() - 4;
    hostile_produce[at..].copy_from_slice(&i32::MAX.to_be_bytes());
    // SaslHandshake v0 would switch to unframed SASL tokens, which the sidecar cannot relay.
    let sasl_v0 = request(
        ApiKey::SaslHandshake,
        0,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    let mut truncated_header = 6i32.to_be_bytes().to_vec();
    truncated_header.extend([0, 3, 0, 1, 0, 0]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"\x00\x00\x00\x10\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef".to_vec(),
            "unknown api key",
        ),
        ("oversized", (200 * 1024 * 1024i32).to_be_bytes().to_vec(), "exceeds the limit"),
        ("truncated", [&100i32.to_be_bytes()[..], b"only a few bytes"].concat(), "closed mid-frame"),
        ("short header", truncated_header, "too short for a request header"),
        ("tls", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00], "TLS handshake"),
        ("http", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "HTTP request"),
        ("unknown api key", unknown_key, "unknown api key 31999"),
        ("unknown version", unknown_version, "Metadata v77 is not supported"),
        ("hostile produce", hostile_produce, "array longer than the message"),
        ("sasl handshake v0", sasl_v0, "SaslHandshake v0 is not supported"),
    ];
    for (name, bytes, log_says) in &cases {
        let mut stream = connect(&sidecar);
        stream.write_all(bytes).unwrap();
        if *name == "truncated" {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(closed_by_peer(&mut stream), "{name}: connection not closed");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sidecar.logs().iter().any(|l| l.contains(log_says)) {
            assert!(std::time::Instant::now() < deadline, "{name}: no log line saying `{log_says}`");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The process and the client that behaved are unaffected.
    rd::produce(&producer, &topic, "after", 10).await;
    let got = rd::consume(&bs, &topic, &unique("g"), 20, &[]);
    assert_eq!(got.len(), 20);
    let allowed: Vec<&str> = cases.iter().map(|(_, _, says)| *says).collect();
    sidecar.assert_quiet_except(&allowed);
    assert!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "bad_request")]) >= 7.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_and_graceful_shutdown() {
    let mut sidecar = Sidecar::start();
    assert_eq!(common::http_get(sidecar.admin, "/healthz").unwrap().0, 200);
    assert_eq!(common::http_get(sidecar.admin, "/readyz").unwrap().0, 200);
    assert_eq!(common::http_get(sidecar.admin, "/nope").unwrap().0, 404);
    let bs = sidecar.bootstrap();
    let topic = unique("metrics");
    rd::create_topic(&bs, &topic, 1).await;
    rd::produce(&rd::producer(&bs, &[("client.id", "metrics-test-client")]), &topic, "m", 5).await;
    let metrics = sidecar.metrics();
    for family in [
        "weir_kafka_requests_total{api=\"Produce\"}",
        "weir_kafka_responses_total{api=\"Metadata\"}",
        "weir_kafka_request_bytes_total{api=\"Produce\"}",
        "weir_kafka_upstream_latency_seconds_bucket{",
        "weir_kafka_proxy_latency_seconds_bucket{",
        "weir_kafka_address_rewrites_total{api=\"Metadata\"}",
        "weir_kafka_client_requests_total{client_id=\"metrics-test-client\"}",
        "weir_connections_open{listener=\"bootstrap\"}",
        "# EOF",
    ] {
        assert!(metrics.contains(family), "missing {family} in /metrics:\n{metrics}");
    }
    assert_eq!(common::metric_value(&metrics, "weir_kafka_produced_records_total", &[("topic", &topic)]), 5.0);

    // SIGTERM: exit 0, with the shutdown logged.
    let status = sidecar.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(sidecar.logs().iter().any(|l| l.contains("sidecar stopped")));
    sidecar.assert_quiet();
}

#[test]
fn bad_config_names_file_and_key_and_exits_non_zero() {
    let dir = std::env::temp_dir();
    let cases = [
        ("listen: 127.0.0.1:1\nbootstrap: [a:1]\nlimits: {max_frame_bytes: lots}\n", "limits.max_frame_bytes"),
        ("listen: 127.0.0.1:1\nbootstrap: [a:1]\nupstream: {conect_timeout_ms: 5}\n", "conect_timeout_ms"),
        ("bootstrap: [a:1]\n", "listen"),
        ("listen: 127.0.0.1:1\nbootstrap: [nothostport]\n", "bootstrap[0]"),
        ("listen: 127.0.0.1:1\nbootstrap: [a:1]\nworkers: 0\n", "workers"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let file = dir.join(format!("weir-bad-{}-{i}.yaml", std::process::id()));
        std::fs::write(&file, yaml).unwrap();
        let out = Command::new(common::weir_binary()).args(["proxy", "--config"]).arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        assert!(stderr.contains(&*file.to_string_lossy()) && stderr.contains(key), "case {i}: {stderr}");
        std::fs::remove_file(file).ok();
    }
    let out = Command::new(common::weir_binary()).args(["proxy", "--config", "/nonexistent.yaml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml"));
    // Broker ports in the kernel's ephemeral range could be taken by the time a broker is
    // discovered: refused at start, naming the setting.
    let out = Command::new(common::weir_binary())
        .args(["proxy", "--listen", "127.0.0.1:40000", "--bootstrap", "127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ephemeral port range") && stderr.contains("broker_ports.base"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_limit_applies_back_pressure_without_losing_requests() {
    let sidecar = Sidecar::start_with(common::SidecarOptions {
        extra_yaml: "limits: {max_in_flight: 1}\n".into(),
        ..Default::default()
    });
    let mut stream = connect(&sidecar);
    let metadata = MetadataRequest::default().with_topics(Some(vec![]));
    let burst: Vec<u8> = (1..=50).flat_map(|id| request(ApiKey::Metadata, 12, id, &metadata)).collect();
    stream.write_all(&burst).unwrap();
    for id in 1..=50 {
        let frame = read_frame(&mut stream).unwrap();
        assert_eq!(weir_wire::header::response_correlation_id(&frame), Some(id));
    }
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_client_connections_are_closed() {
    let sidecar = Sidecar::start_with(common::SidecarOptions {
        upstream_yaml: "  idle_timeout_ms: 300\n".into(),
        ..Default::default()
    });
    let mut stream = connect(&sidecar);
    stream.write_all(&request(ApiKey::ApiVersions, 3, 1, &api_versions_request())).unwrap();
    read_frame(&mut stream).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(closed_by_peer(&mut stream), "idle connection still open");
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_principal_names_every_plaintext_client_and_is_audited() {
    const BILLING: &str = "spiffe://weir.test/ns/shop/sa/billing";
    let audit = std::env::temp_dir().join(format!("weir-audit-fixed-{}.jsonl", std::process::id()));
    let sidecar = Sidecar::start_with(common::SidecarOptions {
        extra_yaml: format!("fixed_principal: \"{BILLING}\"\naudit: {{path: {}}}\n", audit.display()),
        ..Default::default()
    });
    let topic = unique("fixed");
    rd::create_topic(&sidecar.bootstrap(), &topic, 1).await;
    assert!(sidecar.metric("weir_kafka_authenticated_connections_total", &[("principal", BILLING)]) >= 1.0);
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().expect("an audit line")).unwrap();
    assert_eq!(line["mechanism"], "fixed");
    assert_eq!(line["principal"], BILLING);
    assert_eq!(line["success"], true);
    std::fs::remove_file(audit).ok();
    sidecar.assert_quiet();
}
