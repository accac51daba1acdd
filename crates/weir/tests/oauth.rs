//! SASL/OAUTHBEARER terminated at the sidecar: clients present a JWT, the sidecar checks it
//! against the issuer's keys (JWKS file) and uses its `sub` as the principal, which the policy
//! then authorizes. Expired, forged, wrong-audience and unsigned tokens, and oversized SASL
//! messages, are refused and audited.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::idp::{IdentityProvider, AUDIENCE, ISSUER};
use common::raw::{read_frame, request};
use common::{java_client_output_with_jvm, rd, unique, Sidecar, SidecarOptions};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use weir_wire::kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use weir_wire::kafka_protocol::protocol::StrBytes;
use weir_wire::message::decode_response;

/// Set in this test's sidecar: a failed authentication is answered no sooner.
const FAILURE_DELAY_MS: u64 = 300;

impl IdentityProvider {
    fn sidecar(&self, topic_allowed: &str) -> Sidecar {
        self.sidecar_with(topic_allowed, "")
    }

    /// With `sasl_extra`: more lines (indented two spaces) inside `sasl:`.
    fn sidecar_with(&self, topic_allowed: &str, sasl_extra: &str) -> Sidecar {
        let policy = self.dir.join("policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "rules:\n- effect: allow\n  principals: [svc-orders]\n  resources: ['topic:{topic_allowed}', 'group:*']\n  operations: [all]\n"
            ),
        )
        .unwrap();
        Sidecar::start_with(SidecarOptions {
            extra_yaml: format!(
                "sasl:\n  oauthbearer: {{jwks: {}, issuer: '{ISSUER}', audience: {AUDIENCE}}}\n  \
                 failed_authentication_delay_ms: {FAILURE_DELAY_MS}\n{sasl_extra}\
                 authorization: {{policy: {}}}\naudit: {{path: {}}}\n",
                self.dir.join("jwks.json").display(),
                policy.display(),
                self.audit_file().display()
            ),
            ..Default::default()
        })
    }

    fn audit_file(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        common::audit_lines(&self.audit_file())
    }
}

/// The Java client's settings for a KIP-768 token file: JVM flags that allow reading it, and
/// the client properties (SASL_PLAINTEXT, OAUTHBEARER) that make it the token.
struct JavaFileToken {
    jvm: [String; 2],
    url_property: String,
}

impl JavaFileToken {
    fn new(idp: &IdentityProvider) -> Self {
        let file = idp.dir.join("token.jwt");
        std::fs::write(&file, idp.token("svc-orders", AUDIENCE, 600)).unwrap();
        let url = format!("file://{}", file.display());
        Self {
            jvm: [
                format!("-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={url}"),
                format!("-Dorg.apache.kafka.sasl.oauthbearer.allowed.files={}", file.display()),
            ],
            url_property: format!("sasl.oauthbearer.token.endpoint.url={url}"),
        }
    }

    fn jvm(&self) -> [&str; 2] {
        [&self.jvm[0], &self.jvm[1]]
    }

    /// Protocol and mechanism only (for other ways of logging in).
    const BASE: [&'static str; 4] =
        ["--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=OAUTHBEARER"];

    /// The file token's login module and location.
    fn login(&self) -> [&str; 6] {
        [
            "--property",
            "sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
            "--property",
            &self.url_property,
            "--property",
            "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
        ]
    }
}

/// librdkafka asks its context for a token; this one hands out a fixed one.
struct FixedToken(String);

impl ClientContext for FixedToken {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        // librdkafka wants the expiry as wall-clock milliseconds.
        let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 + 600_000;
        Ok(OAuthToken { token: self.0.clone(), principal_name: "ignored-by-the-sidecar".into(), lifetime_ms: expiry })
    }
}

fn bearer_producer(bootstrap: &str, token: String) -> FutureProducer<FixedToken> {
    let mut config: ClientConfig = rd::config(bootstrap);
    config
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("message.timeout.ms", "5000");
    config.create_with_context(FixedToken(token)).expect("producer")
}

async fn send_one(producer: &FutureProducer<FixedToken>, topic: &str) -> Result<(), KafkaError> {
    producer
        .send(FutureRecord::<(), _>::to(topic).payload("x"), Duration::from_secs(6))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_name_the_principal_and_bad_ones_are_refused() {
    let idp = IdentityProvider::new("oauth");
    let topic = unique("oauth");
    let denied_topic = unique("oauth-denied");
    rd::create_topic(&common::direct_bootstrap(), &topic, 1).await;
    let sidecar = idp.sidecar(&topic);
    let bs = sidecar.bootstrap();

    // librdkafka with a good token: the principal is the token's subject, which the policy knows.
    let producer = bearer_producer(&bs, idp.token("svc-orders", AUDIENCE, 600));
    if let Err(e) = send_one(&producer, &topic).await {
        panic!("a valid token produces: {e}\n{}\n{:#?}", sidecar.logs().join("\n"), idp.audit_lines());
    }
    let denied = send_one(&producer, &denied_topic).await.unwrap_err();
    assert_eq!(denied.rdkafka_error_code(), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{denied}");

    // The Java client reads its token from a file (KIP-768).
    let file_token = JavaFileToken::new(&idp);
    let java = |extra: &[&str]| {
        let mut args = vec!["produce", "--bootstrap", &bs, "--topic", &topic, "--count", "3", "--timeout-ms", "20000"];
        args.extend(JavaFileToken::BASE);
        args.extend(extra);
        java_client_output_with_jvm(&file_token.jvm(), &args)
    };
    let out = java(&file_token.login());
    assert!(out.status.success(), "java with a file token: {}", String::from_utf8_lossy(&out.stderr));
    // The Java client's default login makes an unsigned token (`alg: none`): refused.
    let out = java(&[
        "--property",
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"svc-orders\";",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("SaslAuthenticationException"), "{stderr}");

    // Expired, wrong audience, signed by another issuer: refused before any request reaches Kafka.
    let stranger = IdentityProvider::new("stranger");
    let bad = [
        ("token expired", idp.token("svc-orders", AUDIENCE, -3600)),
        ("audience", idp.token("svc-orders", "billing", 600)),
        ("signature", stranger.token("svc-orders", AUDIENCE, 600)),
    ];
    for (_, token) in &bad {
        let producer = bearer_producer(&bs, token.clone());
        assert!(send_one(&producer, &topic).await.is_err(), "a bad token produced");
    }
    let audit = idp.audit_lines();
    let failures: Vec<&str> = audit
        .iter()
        .filter(|l| l["event"] == "authentication" && l["success"] == false)
        .filter_map(|l| l["reason"].as_str())
        .collect();
    for (reason, _) in &bad {
        assert!(failures.iter().any(|f| f.contains(reason)), "no audited failure mentioning {reason}: {failures:?}");
    }
    assert!(failures.iter().any(|f| f.contains("algorithm") || f.contains("no key")), "{failures:?}");
    let counted = sidecar.metric("weir_kafka_authentication_failures_total", &[("mechanism", "sasl")]);
    assert!(counted >= 4.0, "failed authentications not counted: {counted}");
    assert!(
        audit
            .iter()
            .any(|l| l["success"] == true && l["mechanism"] == "sasl_oauthbearer" && l["principal"] == "svc-orders"),
        "{audit:#?}"
    );

    // An oversized SASL message is refused with an error, no sooner than the configured delay
    // for failed authentications, and the connection closed.
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("OAUTHBEARER"));
    stream.write_all(&request(ApiKey::SaslHandshake, 1, 1, &handshake)).unwrap();
    read_frame(&mut stream).unwrap();
    let huge = format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", "a".repeat(64 * 1024));
    let authenticate = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(huge));
    let sent = Instant::now();
    stream.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, &authenticate)).unwrap();
    let frame = read_frame(&mut stream).unwrap();
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(FAILURE_DELAY_MS), "failure answered after {waited:?}");
    let (_, answer): (_, SaslAuthenticateResponse) = decode_response(&frame, ApiKey::SaslAuthenticate, 2).unwrap();
    assert_eq!(answer.error_code, 58, "SASL_AUTHENTICATION_FAILED expected");
    assert!(read_frame(&mut stream).is_err(), "the connection should be closed");
    sidecar.assert_quiet();
}

/// The session lifetime the next test's sidecar gives every SASL session.
const SESSION_MS: u64 = 3000;

/// A raw OAUTHBEARER login (SaslHandshake v1, SaslAuthenticate v2); the sidecar's answer.
fn raw_login(stream: &mut TcpStream, token: &str) -> SaslAuthenticateResponse {
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("OAUTHBEARER"));
    stream.write_all(&request(ApiKey::SaslHandshake, 1, 1, &handshake)).unwrap();
    read_frame(stream).unwrap();
    let message = format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}");
    let authenticate = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    stream.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, &authenticate)).unwrap();
    let frame = read_frame(stream).unwrap();
    decode_response(&frame, ApiKey::SaslAuthenticate, 2).unwrap().1
}

/// Whether a Metadata request on `stream` is answered.
fn metadata_answered(stream: &mut TcpStream, correlation_id: i32) -> bool {
    let metadata = MetadataRequest::default().with_topics(Some(vec![]));
    stream.write_all(&request(ApiKey::Metadata, 12, correlation_id, &metadata)).is_ok() && read_frame(stream).is_ok()
}

/// KIP-368: SASL sessions end; clients that re-authenticate on their connection keep it, and a
/// connection whose session ended is closed at its next request.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_and_clients_reauthenticate_on_their_connection() {
    let idp = IdentityProvider::new("reauth");
    let topic = unique("reauth");
    rd::create_topic(&common::direct_bootstrap(), &topic, 1).await;
    let sidecar = idp.sidecar_with(&topic, &format!("  max_session_ms: {SESSION_MS}\n"));
    let bs = sidecar.bootstrap();

    // librdkafka hears the lifetime and re-authenticates before it ends, so it produces
    // without a break over several lifetimes.
    let producer = bearer_producer(&bs, idp.token("svc-orders", AUDIENCE, 600));
    let until = Instant::now() + Duration::from_millis(4 * SESSION_MS);
    let mut sent = 0;
    while Instant::now() < until {
        send_one(&producer, &topic)
            .await
            .unwrap_or_else(|e| panic!("record {sent}: {e}\n{}", sidecar.logs().join("\n")));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logins_per_connection = || {
        let mut count = std::collections::BTreeMap::<String, usize>::new();
        for line in idp.audit_lines() {
            if line["mechanism"] == "sasl_oauthbearer" && line["success"] == true {
                *count.entry(line["client"].to_string()).or_default() += 1;
            }
        }
        count
    };
    let librdkafka = logins_per_connection();
    let most = librdkafka.values().max().copied().unwrap_or(0);
    assert!(most >= 3, "no connection re-authenticated over 4 session lifetimes: {librdkafka:?}");
    let expired = || sidecar.metric("weir_kafka_closed_connections_total", &[("reason", "session_expired")]);
    assert_eq!(expired(), 0.0, "librdkafka's connections were cut");

    // The Java client too (a KIP-768 file token), as a group member polling for 4 lifetimes.
    let file_token = JavaFileToken::new(&idp);
    let duration = (4 * SESSION_MS).to_string();
    let group = unique("reauth-g");
    let mut args = vec![
        "group-member",
        "--bootstrap",
        &bs,
        "--topic",
        &topic,
        "--group",
        &group,
        "--member-id-label",
        "java",
        "--duration-ms",
        &duration,
    ];
    args.extend(JavaFileToken::BASE);
    args.extend(file_token.login());
    let out = java_client_output_with_jvm(&file_token.jvm(), &args);
    assert!(out.status.success(), "java group member: {}", String::from_utf8_lossy(&out.stderr));
    let java: Vec<usize> =
        logins_per_connection().into_iter().filter(|(c, _)| !librdkafka.contains_key(c)).map(|(_, n)| n).collect();
    assert!(java.iter().any(|&n| n >= 3), "no Java connection re-authenticated: {java:?}");
    assert_eq!(expired(), 0.0, "the Java client's connections were cut");

    // A client that does not re-authenticate: told the lifetime, served until it ends, then cut.
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let login = raw_login(&mut stream, &idp.token("svc-orders", AUDIENCE, 600));
    assert_eq!((login.error_code, login.session_lifetime_ms), (0, SESSION_MS as i64));
    assert!(metadata_answered(&mut stream, 3), "served within its session");
    std::thread::sleep(Duration::from_millis(SESSION_MS + 500));
    assert!(!metadata_answered(&mut stream, 4), "served after its session ended");
    assert_eq!(expired(), 1.0);

    // Re-authenticating on a raw connection: as the same principal it goes on being served; as
    // another principal it is refused and the connection closed.
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(raw_login(&mut stream, &idp.token("svc-orders", AUDIENCE, 600)).error_code, 0);
    assert_eq!(raw_login(&mut stream, &idp.token("svc-orders", AUDIENCE, 600)).error_code, 0);
    assert!(metadata_answered(&mut stream, 5), "served after re-authenticating");
    let other = raw_login(&mut stream, &idp.token("svc-billing", AUDIENCE, 600));
    assert_eq!(other.error_code, 58, "SASL_AUTHENTICATION_FAILED expected");
    assert!(other.error_message.is_some_and(|m| m.contains("svc-billing")), "the refusal names the new principal");
    assert!(!metadata_answered(&mut stream, 6), "served after re-authenticating as someone else");

    // A token that expires sooner ends its session sooner: at exp plus the 30 s clock skew.
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let login = raw_login(&mut stream, &idp.token("svc-orders", AUDIENCE, -28));
    assert_eq!(login.error_code, 0, "accepted within the clock skew");
    assert!((1..SESSION_MS as i64).contains(&login.session_lifetime_ms), "{}", login.session_lifetime_ms);
    sidecar.assert_quiet();
}
