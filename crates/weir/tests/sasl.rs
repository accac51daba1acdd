//! SASL terminated at the sidecar: clients authenticate to the sidecar (SCRAM-SHA-256/512, and
//! PLAIN checked against the same SCRAM entries; never a stored password), the brokers only ever see the sidecar. Wrong
//! passwords, unknown users and requests before authentication are refused and audited;
//! password guessers spend only their own failure budgets (per source address, per user).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use common::raw::request;
use common::{java_client, rd, unique, Sidecar, SidecarOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_core::sasl::ScramMechanism;
use weir_wire::kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use weir_wire::kafka_protocol::protocol::StrBytes;
use weir_wire::message::decode_response;

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("weir-sasl"));
        std::fs::create_dir_all(&dir).unwrap();
        common::sasl_users_file(
            &dir,
            &[("alice", "wonderland", ScramMechanism::Sha512), ("bob", "builder", ScramMechanism::Sha256)],
        );
        Self { dir }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn plain<'a>(user: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", user),
        ("sasl.password", password),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_authenticate_to_the_sidecar_and_failures_are_audited() {
    let files = Files::new();
    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: format!(
            "sasl: {{credentials: {}}}\naudit: {{path: {}, connection_summaries: true}}\n",
            files.dir.join("users.yaml").display(),
            files.dir.join("audit.jsonl").display()
        ),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("sasl-term");

    // librdkafka, SASL/PLAIN to the sidecar; the brokers' MESH listener has no SASL at all.
    let alice = plain("alice", "wonderland");
    rd::produce(&rd::producer(&bs, &alice), &topic, "rd", 20).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 20, &alice).len(), 20);

    // The Java client, as bob.
    let jaas = "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"bob\" password=\"builder\";";
    let out = java_client(&[
        "produce",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        "10",
        "--prefix",
        "java",
        "--property",
        "security.protocol=SASL_PLAINTEXT",
        "--property",
        "sasl.mechanism=PLAIN",
        "--property",
        jaas,
    ]);
    assert!(out.contains(&"produced=10".to_owned()), "{out:?}");

    // SCRAM: librdkafka with SHA-512 as alice, the Java client with SHA-256 as bob (each user's
    // entry fixes the hash), over two SaslAuthenticate round trips each.
    let scram = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", "wonderland"),
    ];
    rd::produce(&rd::producer(&bs, &scram), &topic, "scram", 5).await;
    let jaas_scram = "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"bob\" password=\"builder\";";
    let out = java_client(&[
        "consume",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--count",
        "35",
        "--property",
        "security.protocol=SASL_PLAINTEXT",
        "--property",
        "sasl.mechanism=SCRAM-SHA-256",
        "--property",
        jaas_scram,
    ]);
    assert!(out.contains(&"consumed=35".to_owned()), "{out:?}");
    let mut wrong_scram = scram;
    wrong_scram[3] = ("sasl.password", "looking-glass");
    rd::produce_refused(&bs, &topic, &wrong_scram)
        .await
        .assert_heard(&[rd::AUTHENTICATION], "SCRAM with a wrong password");

    // A wrong password and an unknown user are refused; the clients hear it.
    for (user, password) in [("alice", "looking-glass"), ("mallory", "wonderland")] {
        let refused = rd::produce_refused(&bs, &topic, &plain(user, password)).await;
        refused.assert_heard(&[rd::AUTHENTICATION], &format!("{user} with a wrong password"));
    }

    // A request before authenticating closes the connection.
    let mut raw = std::net::TcpStream::connect(sidecar.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Metadata v1, correlation id 1, client id "x", all topics (null array).
    raw.write_all(&[0, 0, 0, 15, 0, 3, 0, 1, 0, 0, 0, 1, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(raw.read(&mut byte), Ok(0) | Err(_)), "served before authenticating");

    assert!(sidecar.metric("weir_kafka_authenticated_connections_total", &[("principal", "alice")]) >= 2.0);
    assert!(sidecar.metric("weir_kafka_authenticated_connections_total", &[("principal", "bob")]) >= 1.0);
    let by_alice = sidecar.metric("weir_kafka_produced_records_total", &[("topic", &topic), ("principal", "alice")]);
    assert!(by_alice >= 20.0, "records produced by alice: {by_alice}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let audit = loop {
        let lines = common::audit_lines(&files.dir.join("audit.jsonl"));
        if lines.iter().filter(|l| l["success"] == false).count() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(audit.iter().any(|l| l["success"] == true && l["principal"] == "alice" && l["mechanism"] == "sasl_plain"));
    assert!(audit.iter().any(|l| l["success"] == true && l["principal"] == "alice" && l["mechanism"] == "sasl_scram"));
    assert!(audit.iter().any(|l| l["success"] == true && l["principal"] == "bob" && l["mechanism"] == "sasl_scram"));
    let failures: Vec<&serde_json::Value> = audit.iter().filter(|l| l["success"] == false).collect();
    assert!(failures.iter().any(|l| l["reason"].as_str().unwrap_or("").contains("`alice`")), "{failures:?}");
    assert!(failures.iter().any(|l| l["reason"].as_str().unwrap_or("").contains("`mallory`")), "{failures:?}");
    // Closed connections are summarised: alice produced 20 records over PLAIN and 5 over SCRAM.
    let produced_by_alice = |lines: &[serde_json::Value]| -> u64 {
        lines
            .iter()
            .filter(|l| l["event"] == "connection" && l["principal"] == "alice")
            .filter_map(|l| l["produced"][&topic]["records"].as_u64())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = common::audit_lines(&files.dir.join("audit.jsonl"));
        if produced_by_alice(&lines) >= 25 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no connection summaries for alice's 25 records:\n{lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    sidecar.assert_quiet_except(&["request before authenticating"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_authenticates_to_sasl_brokers_so_services_hold_no_password() {
    // The brokers' SASL listeners (user `weir`, SCRAM-SHA-512 and PLAIN); the services talk
    // plaintext to the sidecar and know no broker credential.
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let sidecar = Sidecar::start_with(SidecarOptions {
            bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9095 + 10 * i)).collect::<Vec<_>>().join(","),
            upstream_yaml: format!("  sasl: {{mechanism: {mechanism}, username: weir, password: weir-secret}}\n"),
            ..Default::default()
        });
        let bs = sidecar.bootstrap();
        let topic = unique("sasl-origin");
        rd::create_topic(&bs, &topic, 3).await;
        rd::produce(&rd::producer(&bs, &[]), &topic, "rd", 20).await;
        let out = java_client(&["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "10", "--prefix", "java"]);
        assert!(out.contains(&"produced=10".to_owned()), "{mechanism}: {out:?}");
        assert_eq!(rd::consume(&bs, &topic, &unique("g"), 30, &[]).len(), 30, "{mechanism}");
        sidecar.assert_quiet();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_credentials_are_chosen_by_the_client_principal() {
    // Default identity SCRAM as `weir`; the shop's principals map to PLAIN as `weir`, a rogue
    // namespace maps to a wrong password. The probe (no principal) uses the default.
    let upstream_yaml = "  sasl: {mechanism: SCRAM-SHA-512, username: weir, password: weir-secret}\n  \
         sasl_by_principal:\n    \
         - {principals: ['spiffe://weir.test/ns/shop/*'], sasl: {mechanism: PLAIN, username: weir, password: weir-secret}}\n    \
         - {principals: ['spiffe://weir.test/ns/rogue/*'], sasl: {mechanism: PLAIN, username: weir, password: guessed}}\n";
    let sidecar_as = |principal: &str| {
        Sidecar::start_with(SidecarOptions {
            bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9095 + 10 * i)).collect::<Vec<_>>().join(","),
            upstream_yaml: upstream_yaml.to_owned(),
            extra_yaml: format!("fixed_principal: '{principal}'\n"),
            ..Default::default()
        })
    };
    let shop = sidecar_as("spiffe://weir.test/ns/shop/sa/orders");
    let topic = unique("sasl-map");
    rd::create_topic(&shop.bootstrap(), &topic, 1).await;
    rd::produce(&rd::producer(&shop.bootstrap(), &[]), &topic, "shop", 5).await;
    assert_eq!(rd::consume(&shop.bootstrap(), &topic, &unique("g"), 5, &[]).len(), 5);
    shop.assert_quiet();

    let rogue = sidecar_as("spiffe://weir.test/ns/rogue/sa/x");
    // The sidecar cannot reach the broker as the rogue identity: the client's connection ends.
    let refused = rd::produce_refused(&rogue.bootstrap(), &topic, &[]).await;
    refused.assert_heard(&[rd::TRANSPORT, rd::ALL_BROKERS_DOWN], "the rogue mapping's wrong password");
    let refused =
        rogue.logs().iter().any(|l| l.contains("SASL to broker") && l.contains("Invalid username or password"));
    assert!(refused, "no log line for the broker refusing the mapped identity:\n{}", rogue.logs().join("\n"));
    rogue.assert_quiet_except(&["SASL to broker"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_authenticated_at_the_sidecar_get_the_broker_identity_mapped_to_them() {
    // SASL at the sidecar (alice, bob) and SASL to the brokers: the broker connection waits
    // until the client has authenticated, then uses the credentials mapped to its user.
    let files = Files::new();
    let sidecar = Sidecar::start_with(SidecarOptions {
        bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9095 + 10 * i)).collect::<Vec<_>>().join(","),
        upstream_yaml: "  sasl: {mechanism: SCRAM-SHA-512, username: weir, password: weir-secret}\n  \
             sasl_by_principal:\n    \
             - {principals: [alice], sasl: {mechanism: PLAIN, username: weir, password: weir-secret}}\n    \
             - {principals: [bob], sasl: {mechanism: PLAIN, username: weir, password: guessed}}\n"
            .to_owned(),
        extra_yaml: format!("sasl: {{credentials: {}}}\n", files.dir.join("users.yaml").display()),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("sasl-map-user");
    let alice = plain("alice", "wonderland");
    rd::create_topic(&common::direct_bootstrap(), &topic, 1).await;
    rd::produce(&rd::producer(&bs, &alice), &topic, "alice", 5).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 5, &alice).len(), 5);

    let bob = plain("bob", "builder");
    let refused = rd::produce_refused(&bs, &topic, &bob).await;
    refused.assert_heard(&[rd::TRANSPORT, rd::ALL_BROKERS_DOWN], "bob's mapped broker identity has a wrong password");
    let refused = sidecar
        .logs()
        .iter()
        .any(|l| l.contains("\"principal\":\"bob\"") && l.contains("Invalid username or password"));
    assert!(refused, "no log line for the broker refusing bob's identity:\n{}", sidecar.logs().join("\n"));
    sidecar.assert_quiet_except(&["SASL to broker"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_speaks_tls_and_sasl_together_to_sasl_ssl_brokers() {
    // The brokers' SASL_SSL listeners: TLS checked against the cluster's CA (no client
    // certificate), then SCRAM as `weir`, on the same connection.
    let pki = common::cluster_tls_dir();
    let sidecar = Sidecar::start_with(SidecarOptions {
        bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9098 + 10 * i)).collect::<Vec<_>>().join(","),
        upstream_yaml: format!(
            "  tls: {{ca: {}}}\n  sasl: {{mechanism: SCRAM-SHA-512, username: weir, password: weir-secret}}\n",
            pki.join("ca.pem").display()
        ),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("sasl-ssl");
    rd::create_topic(&bs, &topic, 3).await;
    rd::produce(&rd::producer(&bs, &[]), &topic, "rd", 20).await;
    let out = java_client(&["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "10", "--prefix", "java"]);
    assert!(out.contains(&"produced=10".to_owned()), "{out:?}");
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 30, &[]).len(), 30);

    // These listeners end SASL sessions after 4 s (KIP-368): the sidecar re-authenticates its
    // broker connections in place, so a client producing for three lifetimes never sees a
    // broker connection close.
    let producer = rd::producer(&bs, &[]);
    let until = std::time::Instant::now() + Duration::from_secs(12);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        let record = rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload("steady");
        producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("record {sent}: {e}"));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let closed = sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "upstream_closed")]);
    assert_eq!(closed, 0.0, "a broker connection closed:\n{}", sidecar.logs().join("\n"));
    assert!(
        sidecar.logs().iter().any(|l| l.contains("re-authenticated to the broker")),
        "the sidecar never re-authenticated"
    );
    sidecar.assert_quiet();
}

/// A raw SASL/PLAIN login from `source` (an address of 127/8, which Linux loopback answers
/// on): SaslHandshake v1, SaslAuthenticate v2. The sidecar's answer; `Err` if the connection
/// broke first.
async fn plain_login_from(
    source: &str,
    sidecar: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> std::io::Result<SaslAuthenticateResponse> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("source address"))?;
    let mut stream = socket.connect(sidecar).await?;
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    stream.write_all(&request(ApiKey::SaslHandshake, 1, 1, &handshake)).await?;
    read_frame(&mut stream).await?;
    let message = format!("\0{user}\0{password}");
    let authenticate = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    stream.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, &authenticate)).await?;
    let frame = read_frame(&mut stream).await?;
    let (_, answer) = decode_response(&frame, ApiKey::SaslAuthenticate, 2).map_err(std::io::Error::other)?;
    Ok(answer)
}

async fn read_frame(stream: &mut tokio::net::TcpStream) -> std::io::Result<Bytes> {
    let timeout = Duration::from_secs(30);
    let len = tokio::time::timeout(timeout, stream.read_i32()).await??;
    let mut frame = len.to_be_bytes().to_vec();
    frame.resize(4 + usize::try_from(len).map_err(std::io::Error::other)?, 0);
    tokio::time::timeout(timeout, stream.read_exact(&mut frame[4..])).await??;
    Ok(Bytes::from(frame))
}

fn error_message(answer: &SaslAuthenticateResponse) -> String {
    answer.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default()
}

/// `attackers` connections from `source` at once, each trying `tries` wrong passwords for
/// `user` in turn; the error messages they got.
async fn guess(
    sidecar: std::net::SocketAddr,
    source: &'static str,
    user: &'static str,
    attackers: usize,
    tries: usize,
) -> Vec<String> {
    let tasks: Vec<_> = (0..attackers)
        .map(|a| {
            tokio::spawn(async move {
                let mut messages = Vec::new();
                for t in 0..tries {
                    let answer = plain_login_from(source, sidecar, user, &format!("guess-{a}-{t}")).await.unwrap();
                    assert_eq!(answer.error_code, 58, "a wrong password got in");
                    messages.push(error_message(&answer));
                }
                messages
            })
        })
        .collect();
    let mut messages = Vec::new();
    for task in tasks {
        messages.extend(task.await.unwrap());
    }
    messages
}

/// Audit lines of failed authentications from `source` whose reason contains `text`.
fn audited_failures(file: &std::path::Path, source: &str, text: &str, at_least: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let count = common::audit_lines(file)
            .iter()
            .filter(|l| l["event"] == "authentication" && l["success"] == false)
            .filter(|l| l["client"].as_str().is_some_and(|c| c.starts_with(&format!("{source}:"))))
            .filter(|l| l["reason"].as_str().is_some_and(|r| r.contains(text)))
            .count();
        if count >= at_least || std::time::Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 8, item 5: guessers from one address spend that address's failure budget; past it,
/// their attempts are refused unchecked (no PBKDF2), while clients elsewhere log in as usual.
#[tokio::test(flavor = "multi_thread")]
async fn password_guessers_spend_their_own_source_budget_and_honest_clients_get_in() {
    let files = Files::new();
    let audit = files.dir.join("audit.jsonl");
    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: format!(
            "sasl:\n  credentials: {}\n  failure_budget: {{per_source: 5, per_user: 1000, window_ms: 600000}}\n\
             audit: {{path: {}}}\n",
            files.dir.join("users.yaml").display(),
            audit.display()
        ),
        ..Default::default()
    });
    // 8 connections at once, 2 guesses each: exactly 5 are checked (each is charged before its
    // check), the other 11 refused with the budget's message.
    let messages = guess(sidecar.addr, "127.0.0.2", "alice", 8, 2).await;
    let spent = "too many failed authentications from 127.0.0.2; retry after";
    let checked = messages.iter().filter(|m| m.contains("invalid user name or password for `alice`")).count();
    let refused = messages.iter().filter(|m| m.contains(spent)).count();
    assert_eq!((checked, refused), (5, 11), "{messages:#?}");
    // The right password from there is refused too: the budget is the address's.
    let answer = plain_login_from("127.0.0.2", sidecar.addr, "bob", "builder").await.unwrap();
    assert!(error_message(&answer).contains(spent), "{answer:?}");

    // Meanwhile, from 127.0.0.1: PLAIN and SCRAM logins, and traffic.
    let answer = plain_login_from("127.0.0.1", sidecar.addr, "bob", "builder").await.unwrap();
    assert_eq!(answer.error_code, 0, "{answer:?}");
    let bs = sidecar.bootstrap();
    let topic = unique("sasl-budget");
    rd::produce(&rd::producer(&bs, &plain("alice", "wonderland")), &topic, "plain", 5).await;
    let scram = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "bob"),
        ("sasl.password", "builder"),
    ];
    rd::produce(&rd::producer(&bs, &scram), &topic, "scram", 5).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 10, &scram).len(), 10);

    assert_eq!(sidecar.metric("weir_kafka_authentication_throttled_total", &[("by", "source")]), 12.0);
    assert_eq!(sidecar.metric("weir_kafka_authentication_throttled_total", &[("by", "user")]), 0.0);
    assert_eq!(audited_failures(&audit, "127.0.0.2", spent, 12), 12);
    assert_eq!(audited_failures(&audit, "127.0.0.2", "invalid user name or password", 5), 5);
    sidecar.assert_quiet();
}

/// Guessing one user's password from anywhere spends that user's budget: fresh logins as
/// that user are refused, but a client whose password verified before the attack (the
/// success cache) still gets in, so the attacker cannot lock it out.
#[tokio::test(flavor = "multi_thread")]
async fn guessing_a_password_spends_the_user_budget_but_logged_in_clients_stay_in() {
    let files = Files::new();
    let audit = files.dir.join("audit.jsonl");
    // A one-entry cache, so another user's login pushes alice's password out of it.
    let sidecar = Sidecar::start_with(SidecarOptions {
        extra_yaml: format!(
            "sasl:\n  credentials: {}\n  failure_budget: {{per_source: 0, per_user: 4, window_ms: 600000}}\n  \
             password_cache: {{entries: 1}}\naudit: {{path: {}}}\n",
            files.dir.join("users.yaml").display(),
            audit.display()
        ),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("sasl-user-budget");
    let alice = plain("alice", "wonderland");
    let before = rd::producer(&bs, &alice);
    rd::produce(&before, &topic, "before", 5).await;

    let messages = guess(sidecar.addr, "127.0.0.3", "alice", 3, 3).await;
    let spent = "too many failed authentications for user `alice`; retry after";
    let refused = messages.iter().filter(|m| m.contains(spent)).count();
    assert_eq!(refused, 5, "{messages:#?}");

    // Alice's password verified before the attack: new connections with it still get in.
    let answer = plain_login_from("127.0.0.1", sidecar.addr, "alice", "wonderland").await.unwrap();
    assert_eq!(answer.error_code, 0, "{answer:?}");
    rd::produce(&rd::producer(&bs, &alice), &topic, "after", 5).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 10, &alice).len(), 10);
    // Other users are not affected.
    drop(before);
    let answer = plain_login_from("127.0.0.1", sidecar.addr, "bob", "builder").await.unwrap();
    assert_eq!(answer.error_code, 0, "{answer:?}");
    // Bob's login took the cache's only entry: alice's right password now needs a check, and
    // her budget is spent. SCRAM has no cache.
    let answer = plain_login_from("127.0.0.1", sidecar.addr, "alice", "wonderland").await.unwrap();
    assert!(error_message(&answer).contains(spent), "{answer:?}");
    let scram = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", "wonderland"),
    ];
    rd::produce_refused(&bs, &topic, &scram)
        .await
        .assert_heard(&[rd::AUTHENTICATION], "SCRAM as alice past her spent budget");

    assert!(sidecar.metric("weir_kafka_authentication_throttled_total", &[("by", "user")]) >= 7.0);
    assert_eq!(audited_failures(&audit, "127.0.0.3", spent, 5), 5);
    assert!(audited_failures(&audit, "127.0.0.1", spent, 1) >= 1);
    sidecar.assert_quiet();
}
