//! TLS on both sides of the sidecar. Towards clients: real clients (librdkafka over OpenSSL,
//! the Java client over JSSE) and a test CA made here; the principal comes from the client
//! certificate's SPIFFE URI, and every kind of bad TLS client is turned away without affecting
//! the others. Towards brokers: the cluster's TLS listeners, which require a client
//! certificate, reached with the sidecar's own.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::pki::{server_sans, Pki};
use common::{java_client, java_client_output, rd, unique, Sidecar, SidecarOptions};
use rcgen::SanType;

const ORDERS: &str = "spiffe://weir.test/ns/shop/sa/orders";

fn tls_sidecar(pki: &Pki) -> Sidecar {
    tls_sidecar_with(pki, "")
}

/// A sidecar with mTLS from `pki`, plus `extra` top-level YAML.
fn tls_sidecar_with(pki: &Pki, extra: &str) -> Sidecar {
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n  reload_interval_ms: 200\naudit: {{path: {}}}\n{extra}",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display(),
        pki.path("audit.jsonl").display()
    );
    Sidecar::start_with(SidecarOptions { extra_yaml: yaml, ..Default::default() })
}

fn rd_tls(pki: &Pki, client: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "ssl".to_owned()),
        ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
        ("ssl.certificate.location", pki.path(&format!("{client}.crt")).display().to_string()),
        ("ssl.key.location", pki.path(&format!("{client}.key")).display().to_string()),
    ]
}

fn as_refs<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn java_tls(pki: &Pki, client: &str) -> Vec<String> {
    [
        "security.protocol=SSL".to_owned(),
        "ssl.truststore.type=PEM".to_owned(),
        format!("ssl.truststore.location={}", pki.path("ca.pem").display()),
        "ssl.keystore.type=PEM".to_owned(),
        format!("ssl.keystore.location={}", pki.path(&format!("{client}.pem")).display()),
    ]
    .into_iter()
    .flat_map(|p| ["--property".to_owned(), p])
    .collect()
}

fn java(args: &[&str], tls: &[String]) -> Vec<String> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(tls.iter().map(String::as_str));
    java_client(&all)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_clients_are_served_and_named_by_their_spiffe_id() {
    let pki = Pki::new("good");
    pki.issue("server", server_sans(), false);
    pki.issue("orders", vec![SanType::URI(ORDERS.try_into().unwrap())], false);
    let sidecar = tls_sidecar(&pki);
    let bs = sidecar.bootstrap();
    let topic = unique("tls");

    // librdkafka over OpenSSL, with a client certificate.
    let tls = rd_tls(&pki, "orders");
    let tls = as_refs(&tls);
    rd::produce(&rd::producer(&bs, &tls), &topic, "rd", 30).await;
    let got = rd::consume(&bs, &topic, &unique("g"), 30, &tls);
    assert_eq!(got.len(), 30);

    // The Java client over JSSE, PEM trust and key stores, hostname verification on.
    let jtls = java_tls(&pki, "orders");
    let out = java(&["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "20", "--prefix", "java"], &jtls);
    assert!(out.contains(&"produced=20".to_owned()), "{out:?}");
    let out = java(&["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "50"], &jtls);
    assert!(out.contains(&"consumed=50".to_owned()), "{out:?}");

    let authenticated = sidecar.metric("weir_kafka_authenticated_connections_total", &[("principal", ORDERS)]);
    assert!(authenticated >= 4.0, "{authenticated} authenticated connections:\n{}", sidecar.metrics());
    assert!(
        sidecar.logs().iter().any(|l| l.contains(&format!("\"principal\":\"{ORDERS}\""))),
        "principal not in the logs"
    );
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_clients_are_refused_and_the_rest_unaffected() {
    let pki = Pki::new("strict");
    pki.issue("server", server_sans(), false);
    pki.issue("orders", vec![SanType::URI(ORDERS.try_into().unwrap())], false);
    pki.issue("stale", vec![SanType::URI(ORDERS.try_into().unwrap())], true);
    let rogue = Pki::new("rogue");
    rogue.issue("intruder", vec![SanType::URI(ORDERS.try_into().unwrap())], false);
    // The rogue client trusts our server CA, so only the sidecar's check can stop it.
    std::fs::copy(pki.path("ca.pem"), rogue.path("ca.pem")).unwrap();
    let sidecar = tls_sidecar(&pki);
    let bs = sidecar.bootstrap();
    let topic = unique("tls-bad");
    let good = rd_tls(&pki, "orders");
    let good = as_refs(&good);
    rd::produce(&rd::producer(&bs, &good), &topic, "before", 5).await;

    // Plaintext to the TLS port.
    rd::produce_refused(&bs, &topic, &[])
        .await
        .assert_heard(&[rd::TRANSPORT, rd::ALL_BROKERS_DOWN], "a plaintext client");
    // A certificate from another CA, an expired one, and none at all.
    let intruder = rd_tls(&rogue, "intruder");
    let stale = rd_tls(&pki, "stale");
    let anonymous: Vec<(&str, String)> = good_without_cert(&pki);
    for (name, tls) in [("other CA", intruder), ("expired", stale), ("no certificate", anonymous)] {
        rd::produce_refused(&bs, &topic, &as_refs(&tls))
            .await
            .assert_heard(&[rd::SSL, rd::TRANSPORT, rd::ALL_BROKERS_DOWN], name);
    }
    // The Java client with the rogue certificate fails too.
    let mut args = vec!["produce".to_owned(), "--bootstrap".into(), bs.clone(), "--topic".into(), topic.clone()];
    args.extend(["--count".into(), "1".into(), "--timeout-ms".into(), "8000".into()]);
    args.extend(java_tls(&rogue, "intruder"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(!java_client_output(&refs).status.success(), "Java client with a rogue certificate got through");

    // Nothing of that touched the client that behaves.
    rd::produce(&rd::producer(&bs, &good), &topic, "after", 5).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 10, &good).len(), 10);
    assert!(sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "tls_handshake")]) >= 4.0);
    // Every attempt is in the audit log: the failures with their reason, the successes with
    // the principal.
    let audit = audit_lines(&pki);
    let failures: Vec<_> = audit.iter().filter(|l| l["success"] == false).collect();
    assert!(failures.len() >= 4, "{audit:?}");
    assert!(failures.iter().all(|l| l["reason"].as_str().is_some_and(|r| r.contains("TLS handshake"))), "{failures:?}");
    assert!(audit.iter().any(|l| l["success"] == true && l["principal"] == ORDERS && l["mechanism"] == "mtls"));
    sidecar.assert_quiet_except(&["TLS handshake failed", "TLS handshake timed out"]);
}

fn audit_lines(pki: &Pki) -> Vec<serde_json::Value> {
    common::audit_lines(&pki.path("audit.jsonl"))
}

fn good_without_cert(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![("security.protocol", "ssl".to_owned()), ("ssl.ca.location", pki.path("ca.pem").display().to_string())]
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_server_certificates_are_served_without_a_restart() {
    let pki = Pki::new("rotate");
    pki.issue("server", server_sans(), false);
    pki.issue("orders", vec![SanType::URI(ORDERS.try_into().unwrap())], false);
    let sidecar = tls_sidecar(&pki);
    let bs = sidecar.bootstrap();
    let topic = unique("rotate");
    let old_trust = rd_tls(&pki, "orders");
    rd::produce(&rd::producer(&bs, &as_refs(&old_trust)), &topic, "old", 3).await;

    // A new server certificate from a new CA replaces the files; a client that trusts only
    // the new CA can connect once the sidecar has picked it up.
    let next = Pki::new("rotate-next");
    next.issue("server", server_sans(), false);
    std::fs::copy(next.path("server.crt"), pki.path("server.crt")).unwrap();
    std::fs::copy(next.path("server.key"), pki.path("server.key")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sidecar.logs().iter().any(|l| l.contains("TLS certificates reloaded")) {
        assert!(std::time::Instant::now() < deadline, "certificates never reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut new_trust = rd_tls(&pki, "orders");
    new_trust[1].1 = next.path("ca.pem").display().to_string();
    rd::produce(&rd::producer(&bs, &as_refs(&new_trust)), &topic, "new", 3).await;
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 6, &as_refs(&new_trust)).len(), 6);
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_speaks_tls_to_brokers_with_its_own_certificate() {
    // The brokers' TLS listeners require a client certificate; the services keep talking
    // plaintext on loopback and hold no certificate at all.
    common::kafka();
    let pki = common::cluster_tls_dir();
    let sidecar = Sidecar::start_with(SidecarOptions {
        bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9096 + 10 * i)).collect::<Vec<_>>().join(","),
        upstream_yaml: format!(
            "  tls: {{ca: {}, cert: {}, key: {}}}\n",
            pki.join("ca.pem").display(),
            pki.join("client.crt").display(),
            pki.join("client.key").display()
        ),
        ..Default::default()
    });
    let bs = sidecar.bootstrap();
    let topic = unique("tls-upstream");
    rd::create_topic(&bs, &topic, 3).await;
    rd::produce(&rd::producer(&bs, &[]), &topic, "rd", 20).await;
    let out = java_client(&["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "10", "--prefix", "java"]);
    assert!(out.contains(&"produced=10".to_owned()));
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 30, &[]).len(), 30);
    let out = java_client(&["consume", "--bootstrap", &bs, "--topic", &topic, "--count", "30"]);
    assert!(out.contains(&"consumed=30".to_owned()));
    sidecar.assert_quiet();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_certificate_names_the_principal_the_policy_authorizes() {
    let pki = Pki::new("authz");
    pki.issue("server", server_sans(), false);
    pki.issue("orders", vec![SanType::URI(ORDERS.try_into().unwrap())], false);
    let billing = "spiffe://weir.test/ns/shop/sa/billing";
    pki.issue("billing", vec![SanType::URI(billing.try_into().unwrap())], false);
    let topic = unique("tls-authz");
    let policy = pki.path("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "rules:\n\
             - {{effect: allow, principals: ['{ORDERS}'], resources: ['topic:{topic}'], operations: [write, create]}}\n\
             - {{effect: allow, principals: ['spiffe://weir.test/ns/shop/*'], resources: ['topic:{topic}', 'group:*'], operations: [read]}}\n"
        ),
    )
    .unwrap();
    let sidecar = tls_sidecar_with(&pki, &format!("authorization: {{policy: {}}}\n", policy.display()));
    let bs = sidecar.bootstrap();
    rd::create_topic(&common::direct_bootstrap(), &topic, 1).await;

    let orders = rd_tls(&pki, "orders");
    rd::produce(&rd::producer(&bs, &as_refs(&orders)), &topic, "orders", 5).await;
    let billing_tls = rd_tls(&pki, "billing");
    let billing_tls = as_refs(&billing_tls);
    assert_eq!(rd::consume(&bs, &topic, &unique("g"), 5, &billing_tls).len(), 5, "billing may read");
    let producer = rd::producer(&bs, &billing_tls);
    let refused = producer
        .send(rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload("x"), Duration::from_secs(10))
        .await
        .err()
        .and_then(|(e, _)| e.rdkafka_error_code());
    assert_eq!(refused, Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed), "billing may not write");
    sidecar.assert_quiet();
}

/// Whether a new client connection through the sidecar gets its ApiVersions answered by a
/// broker (each client connection makes a new upstream connection, with the TLS files of now).
fn api_versions_answered(sidecar: &Sidecar) -> bool {
    use common::raw::{read_frame, request};
    use std::io::Write;
    use weir_wire::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
    let mut stream = std::net::TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default())).unwrap();
    read_frame(&mut stream).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_files_are_reloaded_when_they_change() {
    common::kafka();
    let cluster = common::cluster_tls_dir();
    let pki = Pki::new("upstream-reload");
    let (ca, cert, key) = (pki.path("up-ca.pem"), pki.path("up.crt"), pki.path("up.key"));
    let install = |from_cert: PathBuf, from_key: PathBuf| {
        std::fs::copy(&from_cert, &cert).unwrap();
        std::fs::copy(&from_key, &key).unwrap();
    };
    std::fs::copy(cluster.join("ca.pem"), &ca).unwrap();
    install(cluster.join("client.crt"), cluster.join("client.key"));
    let sidecar = Sidecar::start_with(SidecarOptions {
        bootstrap: (0..3).map(|i| format!("127.0.0.1:{}", 9096 + 10 * i)).collect::<Vec<_>>().join(","),
        upstream_yaml: format!(
            "  tls: {{ca: {}, cert: {}, key: {}, reload_interval_ms: 100}}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
        ..Default::default()
    });
    assert!(api_versions_answered(&sidecar));

    // A certificate from a CA the brokers do not trust: new broker connections are refused...
    pki.issue("rogue", vec![SanType::DnsName("weir-sidecar".try_into().unwrap())], false);
    install(pki.path("rogue.crt"), pki.path("rogue.key"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while api_versions_answered(&sidecar) {
        assert!(std::time::Instant::now() < deadline, "the sidecar still uses the old certificate");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ... and the renewed good one is used again, without a restart.
    install(cluster.join("client.crt"), cluster.join("client.key"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !api_versions_answered(&sidecar) {
        assert!(std::time::Instant::now() < deadline, "the sidecar did not pick up the restored certificate");
        std::thread::sleep(Duration::from_millis(200));
    }
    let topic = unique("tls-reload");
    rd::create_topic(&sidecar.bootstrap(), &topic, 1).await;
    rd::produce(&rd::producer(&sidecar.bootstrap(), &[]), &topic, "after", 3).await;
    assert!(sidecar.logs().iter().any(|l| l.contains("upstream TLS files reloaded")));
    // The rogue phase's refusals are the only warnings expected.
    sidecar.assert_quiet_except(&["closing connection"]);
}
