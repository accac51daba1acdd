//! The HTTP gateway (`weir gateway http`) in front of the real Kafka test cluster, driven by
//! curl: records POSTed in the Strimzi bridge's format are in Kafka (read back with librdkafka
//! and the Java client) as the principal of a bearer JWT allows; every bad request gets a
//! status and a message that says what was wrong, and only its own connection suffers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::broker_sidecar::BrokerSidecar;
use common::idp::{IdentityProvider, AUDIENCE, ISSUER};
use common::{direct_bootstrap, rd, unique};

struct Gateway {
    process: BrokerSidecar,
    root: String,
    idp: IdentityProvider,
}

impl Gateway {
    /// Kafka topics `R.orders` and `R.audit`; the gateway takes bearer tokens of its identity
    /// provider; `svc-orders` may write `R.orders` (and `R.missing`, which does not exist).
    fn start(prefix: &str) -> Self {
        common::kafka();
        let root = unique(prefix);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            rd::create_topic(&direct_bootstrap(), &format!("{root}.orders"), 3).await;
            rd::create_topic(&direct_bootstrap(), &format!("{root}.audit"), 1).await;
        });
        let idp = IdentityProvider::new("http-gateway");
        let policy = idp.dir.join("policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "rules:\n- {{effect: allow, principals: [svc-orders], resources: ['topic:{root}.orders', 'topic:{root}.missing'], operations: [write]}}\n"
            ),
        )
        .unwrap();
        let config = format!(
            "kafka: {{bootstrap: \"{}\", properties: {{topic.metadata.propagation.max.ms: \"1000\"}}, delivery_timeout_ms: 5000}}\n\
             bearer: {{jwks: {}, issuer: '{ISSUER}', audience: {AUDIENCE}}}\n\
             authorization: {{policy: {}}}\n\
             limits: {{max_body_bytes: 65536, max_records: 100, header_timeout_ms: 1000, body_timeout_ms: 1500}}\n\
             log: {{format: json, level: \"info,weir_http_gateway=debug\"}}\n",
            direct_bootstrap(),
            idp.dir.join("jwks.json").display(),
            policy.display()
        );
        let process = BrokerSidecar::gateway("http", idp.dir.clone(), &config);
        Gateway { process, root, idp }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.process.addr)
    }

    /// curl with `args` (and -s, the status after the body); (status, body).
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// POSTs `body` to `/topics/TOPIC` with `content_type`, as `token`'s bearer (if any).
    fn post(&self, topic: &str, content_type: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let url = self.url(&format!("/topics/{topic}"));
        let content_type = format!("Content-Type: {content_type}");
        let authorization = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["-X", "POST", &url, "-H", &content_type, "--data-binary", body];
        if let Some(authorization) = &authorization {
            args.extend(["-H", authorization]);
        }
        let (status, body) = self.curl(&args);
        (status, serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON ({status}): {body}")))
    }
}

const JSON: &str = "application/vnd.kafka.json.v2+json";
const BINARY: &str = "application/vnd.kafka.binary.v2+json";

#[test]
fn records_posted_as_a_bearers_principal_are_in_kafka() {
    let gw = Gateway::start("gwhttp");
    let orders = format!("{}.orders", gw.root);
    let token = gw.idp.token("svc-orders", AUDIENCE, 300);

    // JSON: keys and values are JSON, written as their text; headers are base64.
    let body = r#"{"records": [
        {"key": "o-1", "value": {"total": 12}, "headers": [{"key": "source", "value": "d2Vi"}]},
        {"key": "o-2", "value": [1, 2], "partition": 2}]}"#;
    let (status, answer) = gw.post(&orders, JSON, body, Some(&token));
    assert_eq!(status, 200, "{answer}");
    let offsets = answer["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 2, "{answer}");
    assert!(offsets.iter().all(|o| o["offset"].is_i64() && o["partition"].is_i64()), "{answer}");
    assert_eq!(offsets[1]["partition"], 2);

    // Binary: base64 keys and values.
    let (status, answer) =
        gw.post(&orders, BINARY, r#"{"records": [{"key": "bzM=", "value": "AAEC/w=="}]}"#, Some(&token));
    assert_eq!(status, 200, "{answer}");

    let records = rd::consume(&direct_bootstrap(), &orders, &unique("check"), 3, &[]);
    let mut seen: Vec<(String, String)> = records.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("\"o-1\"".to_owned(), "{\"total\":12}".to_owned()),
            ("\"o-2\"".to_owned(), "[1,2]".to_owned()),
            ("o3".to_owned(), String::from_utf8_lossy(&[0, 1, 2, 0xff]).into_owned()),
        ]
    );
    let first = records.iter().find(|r| r.key == "\"o-1\"").unwrap();
    assert_eq!(first.headers, [("source".to_owned(), "web".to_owned())]);
    // The Java client reads them alike.
    let said =
        common::java_client(&["consume", "--bootstrap", &direct_bootstrap(), "--topic", &orders, "--count", "3"]);
    assert!(said.iter().any(|l| l.contains("key=\"o-1\"") && l.contains("value={\"total\":12}")), "{said:?}");

    // Counted per topic and principal; the OpenAPI document names the route.
    let written = [("topic", orders.as_str()), ("principal", "svc-orders")];
    assert_eq!(gw.process.metric("weir_http_records_total", &written), 3.0);
    let (status, doc) = gw.curl(&[&gw.url("/openapi.json")]);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["paths"]["/topics/{topic}"]["post"].is_object());
    gw.process.assert_quiet();
}

#[test]
fn bad_requests_get_a_status_and_a_reason() {
    let gw = Gateway::start("gwhttpbad");
    let (orders, audit) = (format!("{}.orders", gw.root), format!("{}.audit", gw.root));
    let token = gw.idp.token("svc-orders", AUDIENCE, 300);
    let one = r#"{"records": [{"value": 1}]}"#;
    let expect = |(status, answer): (u16, serde_json::Value), code: u16, words: &str| {
        assert_eq!(status, code, "{answer}");
        assert_eq!(answer["error_code"], code, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "`{message}` should say `{words}`");
    };
    expect(gw.post(&orders, JSON, one, None), 401, "no credentials");
    let forged = format!("{}x", gw.idp.token("svc-orders", AUDIENCE, 300));
    expect(gw.post(&orders, JSON, one, Some(&forged)), 401, "signature");
    expect(gw.post(&orders, JSON, one, Some(&gw.idp.token("svc-orders", AUDIENCE, -120))), 401, "expired");
    expect(gw.post(&audit, JSON, one, Some(&token)), 403, "svc-orders may not write to topic");
    expect(gw.post(&orders, "text/plain", one, Some(&token)), 415, "text/plain");
    expect(
        gw.post(&orders, JSON, r#"{"records": [{"value": 1}, {"value": 2, "colour": 3}]}"#, Some(&token)),
        422,
        "records[1]",
    );
    expect(gw.post(&orders, JSON, r#"{"records": [{"value": 1"#, Some(&token)), 422, "line 1");
    expect(
        gw.post(&orders, BINARY, r#"{"records": [{"value": "%%"}]}"#, Some(&token)),
        422,
        "records[0].value: not base64",
    );
    let big = format!(r#"{{"records": [{{"value": "{}"}}]}}"#, "x".repeat(70_000));
    expect(gw.post(&orders, JSON, &big, Some(&token)), 413, "over 65536 bytes");
    let many = format!(r#"{{"records": [{}]}}"#, vec![r#"{"value": 1}"#; 101].join(","));
    expect(gw.post(&orders, JSON, &many, Some(&token)), 413, "at most 100");
    let missing = format!("{}.missing", gw.root);
    let (status, answer) = gw.post(&missing, JSON, one, Some(&token));
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["offsets"][0]["error_code"], 404, "{answer}");
    let (status, _) = gw.curl(&[&gw.url("/nothing")]);
    assert_eq!(status, 404);

    // A client that never finishes its request head is cut off after header_timeout_ms; one
    // that never finishes its body gets 408 after body_timeout_ms; others are served meanwhile.
    let mut slow = TcpStream::connect(gw.process.addr).unwrap();
    slow.write_all(b"POST /topics/x HTTP/1.1\r\nHost: gw\r\n").unwrap();
    let mut lazy = TcpStream::connect(gw.process.addr).unwrap();
    let head = format!(
        "POST /topics/{orders} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nContent-Type: {JSON}\r\nContent-Length: 100\r\n\r\n{{\"records\""
    );
    lazy.write_all(head.as_bytes()).unwrap();
    let (status, _) = gw.post(&orders, JSON, one, Some(&token));
    assert_eq!(status, 200, "served beside the slow ones");
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5), "the half-sent head was cut off");
    lazy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = vec![0; 512];
    let n = lazy.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("did not arrive within 1500 ms"), "{answer}");
    gw.process.assert_quiet();
}
