//! What a client can do before it has authenticated, and how many connections anyone may hold:
//! with SASL at the sidecar, an unauthenticated client sends only small frames, gets its
//! ApiVersions answered by the sidecar, never reaches a broker, and is closed at its
//! authentication deadline; connections beyond the configured limits are refused at accept.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::raw::{api_versions_request, closed_by_peer, read_frame, request};
use common::{rd, sasl_users_file, unique, Sidecar, SidecarOptions};
use weir_core::sasl::ScramMechanism;
use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use weir_wire::message::decode_response;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("weir-unauth"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn sasl_sidecar(dir: &Dir, limits: &str, descriptor_limit: Option<(u64, u64)>) -> Sidecar {
    let users = sasl_users_file(&dir.0, &[("alice", "wonderland", ScramMechanism::Sha512)]);
    Sidecar::start_with(SidecarOptions {
        extra_yaml: format!("sasl: {{credentials: {}}}\nlimits: {{{limits}}}\n", users.display()),
        descriptor_limit,
        ..Default::default()
    })
}

const ALICE: [(&str, &str); 4] = [
    ("security.protocol", "SASL_PLAINTEXT"),
    ("sasl.mechanism", "PLAIN"),
    ("sasl.username", "alice"),
    ("sasl.password", "wonderland"),
];

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream
}

/// Asks for ApiVersions and returns the answer.
fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> ApiVersionsResponse {
    stream.write_all(&request(ApiKey::ApiVersions, 3, correlation_id, &api_versions_request())).unwrap();
    let frame = read_frame(stream).unwrap();
    let (header, response): (_, ApiVersionsResponse) = decode_response(&frame, ApiKey::ApiVersions, 3).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    response
}

/// Polls until `done` holds (at most 30 s; the sidecar's own pace, not a timing claim).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_clients_never_reach_a_broker_and_send_only_small_frames() {
    let dir = Dir::new();
    let sidecar = sasl_sidecar(&dir, "", None);
    let baseline = sidecar.broker_connections();

    // ApiVersions before authentication is answered by the sidecar itself: twenty clients
    // negotiate versions and not one broker connection is made for them.
    let mut clients: Vec<TcpStream> = (0..20).map(|_| connect(sidecar.addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let answer = api_versions(client, i as i32);
        assert_eq!(answer.error_code, 0);
        assert!(answer.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16), "{answer:?}");
    }
    assert_eq!(sidecar.broker_connections(), baseline, "unauthenticated clients reached a broker");
    assert_eq!(sidecar.metric("weir_upstream_connections_open", &[]), 0.0);

    // A 99 MB frame before authentication is refused from its length prefix: the connection
    // is closed without the sidecar reading (or buffering, or forwarding) the rest.
    let mut big = connect(sidecar.addr);
    big.write_all(&99_000_000i32.to_be_bytes()).unwrap();
    let _ = big.write_all(&vec![0u8; 64 * 1024]);
    assert!(closed_by_peer(&mut big), "a 99 MB unauthenticated frame was not refused");
    eventually("the close is counted", || {
        sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "unauthenticated")]) >= 1.0
    });

    // Once authenticated, frames up to limits.max_frame_bytes are fine again: a 600 KiB
    // record (over the 512 KiB pre-authentication limit) goes through and comes back.
    let topic = unique("big-after-auth");
    let producer = rd::producer(&sidecar.bootstrap(), &ALICE);
    let value = "x".repeat(600 * 1024);
    let record = rdkafka::producer::FutureRecord::<(), str>::to(&topic).payload(&value);
    producer.send(record, Duration::from_secs(30)).await.expect("600 KiB record after authentication");
    let consumed = rd::consume(&sidecar.bootstrap(), &topic, &unique("g"), 1, &ALICE);
    assert_eq!(consumed.len(), 1);
    assert!(sidecar.broker_connections() > baseline, "authenticated clients reach the brokers");
    drop(clients);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_unauthenticated_connections_hold_no_broker_connection_and_end_at_their_deadline() {
    let dir = Dir::new();
    // A descriptor limit of 256 (soft) / 2048 (hard): the sidecar raises the soft limit to
    // the hard one at start.
    let sidecar = sasl_sidecar(&dir, "authentication_timeout_ms: 3000", Some((256, 2048)));
    assert_eq!(sidecar.descriptor_limit(), (2048, 2048));
    let baseline = sidecar.broker_connections();

    // 500 clients that connect and say nothing, and one that sends a frame a byte at a time.
    let idle: Vec<TcpStream> = (0..500).map(|_| connect(sidecar.addr)).collect();
    let mut slow = connect(sidecar.addr);
    let frame = request(ApiKey::ApiVersions, 3, 1, &api_versions_request());
    eventually("all 501 connections are accepted", || {
        sidecar.metric("weir_connections_open", &[("listener", "bootstrap")]) >= 501.0
    });
    assert_eq!(sidecar.broker_connections(), baseline, "idle unauthenticated connections hold broker connections");

    // Meanwhile an honest client authenticates, produces and consumes.
    let topic = unique("honest");
    rd::produce(&rd::producer(&sidecar.bootstrap(), &ALICE), &topic, "honest", 10).await;
    assert_eq!(rd::consume(&sidecar.bootstrap(), &topic, &unique("g"), 10, &ALICE).len(), 10);

    // The slow client's bytes do not buy it time: the deadline runs from its connect.
    for byte in &frame[..frame.len() - 1] {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "authentication_timeout")]) >= 501.0 {
            break;
        }
    }
    assert!(closed_by_peer(&mut slow), "a slowloris client outlived its authentication deadline");
    for mut stream in idle {
        assert!(closed_by_peer(&mut stream), "an idle unauthenticated connection outlived its deadline");
    }
    assert!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "authentication_timeout")]) >= 501.0);
    sidecar.assert_quiet();
}

/// Past the creation rate, connections are served late, not refused: every one of a burst
/// is answered, and those past the first second's worth are counted as delayed.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_creation_rate_are_served_late() {
    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: "limits: {connections_per_second: 2}\n".into(),
        ..Default::default()
    });
    let mut burst: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(sidecar.addr).unwrap()).collect();
    for (i, stream) in burst.iter_mut().enumerate() {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        assert_eq!(api_versions(stream, i as i32).error_code, 0, "connection {i} was served");
    }
    let delayed = sidecar.metric("weir_connections_delayed_total", &[("listener", "bootstrap")]);
    assert!(delayed >= 3.0, "two a second after a burst of two: 4 of 6 wait (3 if one came late); counted {delayed}");
    assert_eq!(sidecar.metric("weir_connections_refused_total", &[]), 0.0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limits_are_refused_at_accept() {
    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: "limits: {max_connections: 6, max_connections_per_source: 4}\n".into(),
        ..Default::default()
    });
    let from = |source: &str| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&source.parse::<SocketAddr>().unwrap().into()).unwrap();
        socket.connect(&sidecar.addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream
    };
    let refused = |reason: &str| {
        sidecar.metric("weir_connections_refused_total", &[("listener", "bootstrap"), ("reason", reason)])
    };

    let mut local: Vec<TcpStream> = (0..4).map(|_| from("127.0.0.1:0")).collect();
    for (i, stream) in local.iter_mut().enumerate() {
        assert_eq!(api_versions(stream, i as i32).error_code, 0);
    }
    let mut fifth = from("127.0.0.1:0");
    assert!(closed_by_peer(&mut fifth), "a fifth connection from one address was served");
    assert_eq!(refused("per_source_limit"), 1.0);

    // Another address has its own allowance, until the total is reached.
    let mut other: Vec<TcpStream> = (0..2).map(|_| from("127.0.0.2:0")).collect();
    for stream in &mut other {
        assert_eq!(api_versions(stream, 9).error_code, 0);
    }
    let mut seventh = from("127.0.0.3:0");
    assert!(closed_by_peer(&mut seventh), "a seventh connection was served past max_connections");
    assert_eq!(refused("total_limit"), 1.0);

    // A closed connection frees its place.
    drop(local.pop());
    eventually("the closed connection's place is free", || {
        sidecar.metric("weir_connections_open", &[("listener", "bootstrap")]) <= 5.0
    });
    let mut again = from("127.0.0.1:0");
    assert_eq!(api_versions(&mut again, 10).error_code, 0);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_meets_the_sidecars_own_connection_limit_before_the_descriptor_limit() {
    let dir = Dir::new();
    // 200 descriptors: (200 - 64 reserved) / 2 = 68 connections fit, each with its broker
    // connection once authenticated.
    let sidecar = sasl_sidecar(&dir, "authentication_timeout_ms: 3000", Some((200, 200)));
    let flood: Vec<TcpStream> = (0..100).map(|_| connect(sidecar.addr)).collect();
    let refused =
        || sidecar.metric("weir_connections_refused_total", &[("listener", "bootstrap"), ("reason", "total_limit")]);
    eventually("the connections over the limit are refused", || refused() >= 32.0);
    assert_eq!(refused(), 32.0);
    // The flood ends at its deadline, and the sidecar serves an honest client.
    eventually("the flood is closed", || sidecar.metric("weir_connections_open", &[("listener", "bootstrap")]) == 0.0);
    let topic = unique("after-flood");
    rd::produce(&rd::producer(&sidecar.bootstrap(), &ALICE), &topic, "honest", 5).await;
    assert_eq!(rd::consume(&sidecar.bootstrap(), &topic, &unique("g"), 5, &ALICE).len(), 5);
    drop(flood);
    // The kernel never refused the sidecar a socket (that would be an "accept failed" warning).
    sidecar.assert_quiet();
}
