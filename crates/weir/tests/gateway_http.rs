//! The HTTP gateway (`weir gateway http`) in front of the real Kafka test cluster, driven by
//! curl: records POSTed in the Strimzi bridge's format are in Kafka (read back with librdkafka
//! and the Java client) as the principal of a bearer JWT or a client certificate allows; topics
//! read back through consumer-group instances and as Server-Sent Events (curl, and headless
//! chromium's EventSource); every bad request gets a status and a message that says what was
//! wrong, and only its own connection suffers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::broker_sidecar::BrokerSidecar;
use common::idp::{IdentityProvider, AUDIENCE, ISSUER};
use common::pki::{server_sans, Pki};
use common::{direct_bootstrap, rd, unique};

struct Gateway {
    process: BrokerSidecar,
    root: String,
    idp: IdentityProvider,
}

impl Gateway {
    /// Kafka topics `R.orders` and `R.audit`; the gateway takes bearer tokens of its identity
    /// provider; `svc-orders` may write and read `R.orders` (and `R.missing`, which does not
    /// exist).
    fn start(prefix: &str) -> Self {
        Self::start_with(prefix, |_| String::new(), "")
    }

    /// As `start`, with more policy rules (given the topics' prefix) and config lines.
    fn start_with(prefix: &str, rules: impl Fn(&str) -> String, config: &str) -> Self {
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
                "rules:\n- {{effect: allow, principals: [svc-orders], resources: ['topic:{root}.orders', 'topic:{root}.missing'], operations: [write, read]}}\n{}",
                rules(&root)
            ),
        )
        .unwrap();
        let config = format!(
            "kafka: {{bootstrap: \"{}\", properties: {{topic.metadata.propagation.max.ms: \"1000\"}}, delivery_timeout_ms: 5000}}\n\
             bearer: {{jwks: {}, issuer: '{ISSUER}', audience: {AUDIENCE}}}\n\
             authorization: {{policy: {}}}\n\
             limits: {{max_body_bytes: 65536, max_records: 100, header_timeout_ms: 1000, body_timeout_ms: 1500, consumer_idle_timeout_ms: 4000}}\n\
             log: {{format: json, level: \"info,weir_http_gateway=debug\"}}\n{config}",
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

    /// `GET path` as a stream of events, read by curl as `token`'s bearer (if any), with more
    /// headers.
    fn events(&self, path: &str, token: Option<&str>, headers: &[&str]) -> Events {
        let mut curl = Command::new("curl");
        curl.args(["-sN", &self.url(path)]).stdout(Stdio::piped());
        if let Some(token) = token {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        for header in headers {
            curl.args(["-H", header]);
        }
        let mut child = curl.spawn().expect("curl");
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Events { child, lines: received }
    }
}

/// Server-Sent Events as curl reads them.
struct Events {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

/// One event: its fields (`id`, `event`, `retry`), its data lines joined.
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
}

impl Events {
    /// The next event (comments skipped); panics after 20 s without one.
    fn next(&mut self) -> Event {
        let mut event = Event::default();
        let mut any = false;
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(20)).expect("an event within 20 s");
            if line.is_empty() {
                if any {
                    return event;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            any = true;
            let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
            match field {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.kind = Some(value.to_owned()),
                "data" => match &mut event.data {
                    Some(data) => *data = format!("{data}\n{value}"),
                    None => event.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }

    /// The next `n` events with data.
    fn records(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            let event = self.next();
            if event.data.is_some() {
                events.push(event);
            }
        }
        events
    }

    /// Whether no event with data comes within `wait`.
    fn quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("data:") => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        true
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    expect(gw.post(&audit, JSON, one, Some(&token)), 403, "svc-orders may not write topic");
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

/// The value of each JSON-format event's record, with the partition and offset it names.
fn placed(events: &[Event]) -> Vec<(i64, i64, serde_json::Value)> {
    events
        .iter()
        .map(|e| {
            let record: serde_json::Value = serde_json::from_str(e.data.as_deref().unwrap()).unwrap();
            (record["partition"].as_i64().unwrap(), record["offset"].as_i64().unwrap(), record["value"].clone())
        })
        .collect()
}

#[test]
fn a_topic_streams_as_server_sent_events_from_where_asked_and_resumes_by_event_id() {
    let gw = Gateway::start_with(
        "gwsse",
        |root| {
            format!(
                "- {{effect: allow, principals: [svc-audit], resources: ['topic:{root}.audit'], operations: [read]}}\n"
            )
        },
        "",
    );
    let orders = format!("{}.orders", gw.root);
    let token = gw.idp.token("svc-orders", AUDIENCE, 300);
    let five: Vec<String> = (1..=5).map(|n| format!(r#"{{"key": "o-{n}", "value": {{"n": {n}}}}}"#)).collect();
    let (status, answer) = gw.post(&orders, JSON, &format!(r#"{{"records": [{}]}}"#, five.join(",")), Some(&token));
    assert_eq!(status, 200, "{answer}");

    // From the beginning, as whole records: the stream first says where it stands (partition 0
    // .. 2 at offset 0), then each record with the position after it as its id.
    let path = format!("/topics/{orders}/events?from=earliest&format=json");
    let mut stream = gw.events(&path, Some(&token), &[]);
    let start = stream.next();
    assert_eq!((start.id.as_deref(), start.data.as_deref()), (Some("0-0.1-0.2-0"), None));
    let events = stream.records(5);
    let mut values: Vec<i64> = placed(&events).iter().map(|(_, _, v)| v["n"].as_i64().unwrap()).collect();
    values.sort();
    assert_eq!(values, [1, 2, 3, 4, 5]);
    for (event, (partition, offset, _)) in events.iter().zip(placed(&events)) {
        let id = event.id.as_deref().unwrap();
        assert!(id.split('.').any(|p| p == format!("{partition}-{}", offset + 1)), "{id} names {partition}-{offset}+1");
    }
    let record: serde_json::Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
    assert_eq!(record["topic"], orders.as_str());
    assert!(record["key"].as_str().is_some_and(|k| k.starts_with("o-")) && record["timestamp"].is_i64(), "{record}");

    // Resumed at the second event's id (as EventSource does with Last-Event-ID): the other
    // three, none twice.
    let resume = format!("Last-Event-ID: {}", events[1].id.as_deref().unwrap());
    let mut resumed = gw.events(&format!("/topics/{orders}/events?format=json"), Some(&token), &[&resume]);
    let rest: Vec<_> = placed(&resumed.records(3)).into_iter().map(|(p, o, _)| (p, o)).collect();
    let mut expected: Vec<_> = placed(&events[2..]).into_iter().map(|(p, o, _)| (p, o)).collect();
    let mut got = rest.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(resumed.quiet_for(Duration::from_millis(1500)), "nothing more, nothing twice");

    // From now on, values as text: what is written after the stream began, live.
    let mut live = gw.events(&format!("/topics/{orders}/events"), Some(&token), &[]);
    assert!(live.next().id.is_some());
    let (status, _) = gw.post(&orders, JSON, r#"{"records": [{"value": "six", "partition": 1}]}"#, Some(&token));
    assert_eq!(status, 200);
    let six = live.records(1).remove(0);
    assert_eq!(six.data.as_deref(), Some("\"six\""));
    // From a time after every record: nothing of the past.
    let future = format!("/topics/{orders}/events?time=2100-01-01T00:00:00Z");
    let mut future = gw.events(&future, Some(&token), &[]);
    assert!(future.quiet_for(Duration::from_millis(1500)));

    // Refused before any stream: no read on the topic, a topic Kafka lacks, a bad query.
    let expect = |(status, body): (u16, String), code: u16, words: &str| {
        assert_eq!(status, code, "{body}");
        assert!(body.contains(words), "`{body}` should say `{words}`");
    };
    let audit = gw.idp.token("svc-audit", AUDIENCE, 300);
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let url = gw.url(&format!("/topics/{orders}/events"));
    expect(gw.curl(&["-H", &bearer(&audit), &url]), 403, "svc-audit may not read topic");
    let missing = gw.url(&format!("/topics/{}.missing/events", gw.root));
    expect(gw.curl(&["-H", &bearer(&token), &missing]), 404, "Kafka has no topic");
    expect(gw.curl(&["-H", &bearer(&token), &format!("{url}?from=yesterday")]), 400, "from=yesterday");
    expect(gw.curl(&["-H", &bearer(&token), "-H", "Last-Event-ID: 0-x", &url]), 400, "Last-Event-ID");
    // Clients that go away are noticed: their streams close.
    assert_eq!(gw.process.metric("weir_http_streams_open", &[]), 4.0);
    drop((stream, resumed));
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.process.metric("weir_http_streams_open", &[]) != 2.0 {
        assert!(Instant::now() < deadline, "two streams stay open after their clients left");
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.process.assert_quiet();
}

/// What the test's web page reported to the server that served it.
#[derive(Default)]
struct PageReport {
    received: usize,
    report: Option<String>,
}

/// Serves `page` (as it is at each request) at `/` on its own origin; `/progress?n=N` records how many events the page
/// has; `/report` takes its final report; `/hold` (an image the page loads) is answered only
/// once the report is in, so chromium's `--dump-dom` waits for the page to finish.
fn serve_page(page: Arc<Mutex<String>>) -> (String, Arc<(Mutex<PageReport>, Condvar)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new((Mutex::new(PageReport::default()), Condvar::new()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (page, state) = (page.lock().unwrap().clone(), shared.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                reader.read_line(&mut head).unwrap();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (lock, changed) = &*state;
                let (content_type, answer) = if let Some(n) = path.strip_prefix("/progress?n=") {
                    // The page's fetches may arrive out of order: the most it reported counts.
                    let mut report = lock.lock().unwrap();
                    report.received = report.received.max(n.parse().unwrap());
                    changed.notify_all();
                    ("text/plain", String::new())
                } else if path == "/report" {
                    lock.lock().unwrap().report = Some(String::from_utf8(body).unwrap());
                    changed.notify_all();
                    ("text/plain", String::new())
                } else if path == "/hold" {
                    let guard = lock.lock().unwrap();
                    let _ = changed.wait_timeout_while(guard, Duration::from_secs(60), |s| s.report.is_none());
                    ("image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'/>".to_owned())
                } else {
                    ("text/html", page)
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    (origin, state)
}

#[test]
fn a_browsers_event_source_follows_a_topic_across_a_gateway_restart() {
    // The page's origin is not the gateway's: the gateway lets it read (CORS). Browsers send no
    // bearer token with EventSource: the gateway's fixed principal `browser` reads.
    let page = |gateway: &str, topic: &str| {
        format!(
            r#"<!doctype html><html><body><img src="/hold"><script>
const seen = [];
let opened = 0;
const source = new EventSource("{gateway}/topics/{topic}/events?from=earliest");
source.onopen = () => {{ opened += 1; }};
source.onmessage = (e) => {{
  seen.push({{id: e.lastEventId, data: e.data}});
  fetch("/progress?n=" + seen.length);
  if (seen.length == 6) {{
    source.close();
    fetch("/report", {{method: "POST", body: JSON.stringify({{opened, seen}})}});
  }}
}};
</script></body></html>"#
        )
    };
    // The page names the gateway, and the gateway's config names the page's origin: serve the
    // page first, with the gateway's address filled in once it is known.
    let slot: Arc<Mutex<String>> = Arc::default();
    let (origin, state) = serve_page(slot.clone());
    let mut gw = Gateway::start_with(
        "gwbrowser",
        |root| {
            format!(
                "- {{effect: allow, principals: [browser], resources: ['topic:{root}.orders'], operations: [read]}}\n"
            )
        },
        &format!("fixed_principal: browser\ncors: {{allowed_origins: ['{origin}']}}\n"),
    );
    let orders = format!("{}.orders", gw.root);
    *slot.lock().unwrap() = page(&gw.url(""), &orders);
    let token = gw.idp.token("svc-orders", AUDIENCE, 300);
    let post = |gw: &Gateway, values: [&str; 3]| {
        let records: Vec<String> = values.iter().map(|v| format!(r#"{{"value": "{v}"}}"#)).collect();
        let (status, answer) =
            gw.post(&orders, JSON, &format!(r#"{{"records": [{}]}}"#, records.join(",")), Some(&token));
        assert_eq!(status, 200, "{answer}");
    };
    post(&gw, ["a", "b", "c"]);

    let url = format!("{origin}/");
    let browser = std::thread::spawn(move || common::headless_chromium(&["--timeout=90000", "--dump-dom", &url]));
    let (lock, changed) = &*state;
    let received = |n: usize| {
        let guard = lock.lock().unwrap();
        let (guard, _) = changed.wait_timeout_while(guard, Duration::from_secs(60), |s| s.received < n).unwrap();
        assert!(guard.received >= n, "the page received {} events, not {n}", guard.received);
    };
    received(3);
    // The gateway dies under the open stream and comes back; the browser reconnects by itself
    // with the last event's id and gets what was written meanwhile, nothing twice.
    gw.process.restart();
    post(&gw, ["d", "e", "f"]);
    received(6);
    browser.join().unwrap();
    let report = lock.lock().unwrap().report.clone().expect("the page's report");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let mut data: Vec<&str> = report["seen"].as_array().unwrap().iter().map(|e| e["data"].as_str().unwrap()).collect();
    data[..3].sort();
    data[3..].sort();
    assert_eq!(data, ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\"", "\"f\""]);
    assert_eq!(report["opened"], 2, "the browser reconnected once: {report}");
    gw.process.assert_quiet();
}

#[test]
fn consumer_instances_poll_commit_and_seek_for_their_principal_alone() {
    let gw = Gateway::start_with(
        "gwgroup",
        |root| {
            format!(
                "- {{effect: allow, principals: [svc-orders], resources: ['group:{root}.billing'], operations: [read]}}\n\
                 - {{effect: allow, principals: [svc-audit], resources: ['topic:{root}.orders'], operations: [read]}}\n"
            )
        },
        "",
    );
    let (orders, group) = (format!("{}.orders", gw.root), format!("{}.billing", gw.root));
    let token = gw.idp.token("svc-orders", AUDIENCE, 300);
    let bearer = format!("Authorization: Bearer {token}");
    let call = |method: &str, path: &str, body: Option<&str>, headers: &[&str]| -> (u16, serde_json::Value) {
        let url = gw.url(path);
        let mut args = vec!["-X", method, &url, "-H", &bearer];
        for header in headers {
            args.extend(["-H", header]);
        }
        if let Some(body) = body {
            args.extend(["-H", "Content-Type: application/vnd.kafka.v2+json", "--data-binary", body]);
        }
        let (status, text) = gw.curl(&args);
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    };
    let base = format!("/consumers/{group}/instances/c1");
    let create = r#"{"name": "c1", "format": "json", "auto.offset.reset": "earliest", "enable.auto.commit": false}"#;
    let (status, created) = call("POST", &format!("/consumers/{group}"), Some(create), &[]);
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance_id"], "c1");
    assert_eq!(created["base_uri"], gw.url(&base));
    let subscribe = format!(r#"{{"topics": ["{orders}"]}}"#);
    assert_eq!(call("POST", &format!("{base}/subscription"), Some(&subscribe), &[]).0, 204);
    let four: Vec<String> = (1..=4).map(|n| format!(r#"{{"value": {{"n": {n}}}}}"#)).collect();
    let (status, _) = gw.post(&orders, JSON, &format!(r#"{{"records": [{}]}}"#, four.join(",")), Some(&token));
    assert_eq!(status, 200);

    // Polled until all four are in: JSON values, each where Kafka has it.
    let poll = |want: usize| -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < want && Instant::now() < deadline {
            let (status, records) = call(
                "GET",
                &format!("{base}/records?timeout=1000"),
                None,
                &["Accept: application/vnd.kafka.json.v2+json"],
            );
            assert_eq!(status, 200, "{records}");
            got.extend(records.as_array().unwrap().iter().cloned());
        }
        got
    };
    let values = |records: &[serde_json::Value]| {
        let mut n: Vec<i64> = records.iter().map(|r| r["value"]["n"].as_i64().unwrap()).collect();
        n.sort();
        n
    };
    let first = poll(4);
    assert_eq!(values(&first), [1, 2, 3, 4]);
    assert!(first.iter().all(|r| r["topic"] == orders.as_str() && r["offset"].is_i64()), "{first:?}");
    let (status, subscription) = call("GET", &format!("{base}/subscription"), None, &[]);
    assert_eq!((status, &subscription["topics"][0]), (200, &serde_json::json!(orders)), "{subscription}");

    // Back to the beginning of a partition (assigned to the only member): its records again.
    let partition = first[0]["partition"].as_i64().unwrap();
    let zero: Vec<_> = first.iter().filter(|r| r["partition"] == partition).cloned().collect();
    let body = format!(r#"{{"partitions": [{{"topic": "{orders}", "partition": {partition}}}]}}"#);
    assert_eq!(call("POST", &format!("{base}/positions/beginning"), Some(&body), &[]).0, 204);
    assert_eq!(values(&poll(zero.len())), values(&zero));
    // Committed (everything polled); a new member of the group starts past it.
    assert_eq!(call("POST", &format!("{base}/offsets"), None, &[]).0, 204);
    assert_eq!(call("DELETE", &base, None, &[]).0, 204);
    let (status, _) = call("POST", &format!("/consumers/{group}"), Some(create), &[]);
    assert_eq!(status, 200, "the name is free again");
    assert_eq!(call("POST", &format!("{base}/subscription"), Some(&subscribe), &[]).0, 204);
    let (status, _) = gw.post(&orders, JSON, r#"{"records": [{"value": {"n": 5}}]}"#, Some(&token));
    assert_eq!(status, 200);
    assert_eq!(values(&poll(1)), [5], "only what was not committed");

    // The instance is svc-orders' alone; the group and topics are the policy's.
    let expect = |(status, answer): (u16, serde_json::Value), code: u16, words: &str| {
        assert_eq!(status, code, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "`{message}` should say `{words}`");
    };
    let audit = format!("Authorization: Bearer {}", gw.idp.token("svc-audit", AUDIENCE, 300));
    let url = gw.url(&format!("{base}/records"));
    let (status, answer) = gw.curl(&["-H", &audit, &url]);
    assert_eq!(status, 404, "another principal cannot see the instance: {answer}");
    assert!(answer.contains("has no consumer instance c1 of svc-audit"), "{answer}");
    let (status, answer) =
        gw.curl(&["-X", "POST", "-H", &audit, "--data-binary", "{}", &gw.url(&format!("/consumers/{group}"))]);
    assert!(status == 403 && answer.contains("svc-audit may not read group"), "{status} {answer}");
    let audit_topic = format!(r#"{{"topics": ["{}.audit"]}}"#, gw.root);
    expect(call("POST", &format!("{base}/subscription"), Some(&audit_topic), &[]), 403, "may not read topic");
    expect(call("POST", &format!("/consumers/{group}"), Some(create), &[]), 409, "already has a consumer instance c1");
    expect(
        call("GET", &format!("{base}/records"), None, &["Accept: application/vnd.kafka.binary.v2+json"]),
        406,
        "application/vnd.kafka.json.v2+json",
    );
    expect(call("POST", &format!("{base}/offsets"), Some(r#"{"offsets": [{"topic": "x"}]}"#), &[]), 422, "offsets[0]");
    expect(
        call("POST", &format!("{base}/subscription"), Some(r#"{"topic_pattern": ".*"}"#), &[]),
        422,
        "topic_pattern",
    );
    let other = format!(r#"{{"partitions": [{{"topic": "{orders}", "partition": 99}}]}}"#);
    expect(call("POST", &format!("{base}/positions/end"), Some(&other), &[]), 409, "not assigned");
    expect(call("POST", &format!("/consumers/{group}"), Some(r#"{"name": "a/b"}"#), &[]), 422, "name `a/b`");

    // An instance nobody uses is deleted after consumer_idle_timeout_ms (4 s here).
    let (status, _) = call("POST", &format!("/consumers/{group}"), Some(r#"{"name": "idle"}"#), &[]);
    assert_eq!(status, 200);
    assert!(
        gw.process.logged(&["HTTP consumer instance deleted: idle", "\"name\":\"idle\""]) || {
            std::thread::sleep(Duration::from_secs(6));
            gw.process.logged(&["HTTP consumer instance deleted: idle"])
        }
    );
    expect(
        call("GET", &format!("/consumers/{group}/instances/idle/records"), None, &[]),
        404,
        "no consumer instance idle",
    );
    gw.process.assert_quiet();
}

#[test]
fn a_client_certificate_names_the_caller_over_https_and_a_bearer_token_overrides_it() {
    let pki = Pki::new("http-gateway");
    pki.issue("server", server_sans(), false);
    let billing = "spiffe://weir.test/ns/shop/sa/billing";
    pki.issue("billing", vec![rcgen::SanType::URI(billing.try_into().unwrap())], false);
    let tls = format!(
        "tls: {{cert: {}, key: {}, client_ca: {}, require_client_cert: false}}\n",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display()
    );
    let gw = Gateway::start_with(
        "gwmtls",
        |root| {
            format!("- {{effect: allow, principals: ['{billing}'], resources: ['topic:{root}.orders'], operations: [write]}}\n")
        },
        &tls,
    );
    let orders = format!("{}.orders", gw.root);
    let url = |topic: &str| format!("https://localhost:{}/topics/{topic}", gw.process.addr.port());
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("billing.crt"), pki.path("billing.key"));
    let (ca, cert, key) = (ca.to_str().unwrap(), cert.to_str().unwrap(), key.to_str().unwrap());
    let post = |topic: &str, with_cert: bool, token: Option<&str>| {
        let url = url(topic);
        let mut args = vec!["--cacert", ca, "-X", "POST", &url, "-H", "Content-Type: application/json"];
        args.extend(["--data", r#"{"records": [{"value": "paid"}]}"#]);
        if with_cert {
            args.extend(["--cert", cert, "--key", key]);
        }
        let bearer = token.map(|t| format!("Authorization: Bearer {t}"));
        if let Some(bearer) = &bearer {
            args.extend(["-H", bearer]);
        }
        gw.curl(&args)
    };
    let (status, answer) = post(&orders, true, None);
    assert_eq!(status, 200, "{answer}");
    let records = rd::consume(&direct_bootstrap(), &orders, &unique("check"), 1, &[]);
    assert_eq!(records[0].value, "\"paid\"");
    let (status, answer) = post(&orders, false, None);
    assert!(status == 401 && answer.contains("no credentials"), "{status} {answer}");
    let (status, answer) = post(&format!("{}.audit", gw.root), true, None);
    assert!(status == 403 && answer.contains(&format!("{billing} may not write topic")), "{status} {answer}");
    // A token on a certified connection: the token's principal acts (a service forwarding its
    // user's identity), here one the policy lets write nothing of billing's.
    let token = gw.idp.token("svc-audit", AUDIENCE, 300);
    let (status, answer) = post(&orders, true, Some(&token));
    assert!(status == 403 && answer.contains("svc-audit may not write topic"), "{status} {answer}");
    gw.process.assert_quiet();
}
