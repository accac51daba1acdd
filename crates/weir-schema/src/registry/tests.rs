//! The registry client against a small HTTP server of its own that answers as a registry's
//! Confluent-compatible API does (shapes as Apicurio answers them), counting what it is asked.
//! The proof against a real registry is the sidecar's integration test.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use super::*;

/// Paths asked, and how often.
#[derive(Default)]
struct Asked(Mutex<HashMap<String, usize>>);

impl Asked {
    fn count(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn answer(path: &str) -> (u16, String) {
    match path {
        "/api/schemas/ids/1" => (200, r#"{"schema":"{\"type\":\"string\"}","references":[]}"#.into()),
        "/api/schemas/ids/1/versions" => (200, r#"[{"subject":"a-value","version":1}]"#.into()),
        "/api/schemas/ids/5" => (200, r#"{"schema":"{}","schemaType":"JSON"}"#.into()),
        "/api/schemas/ids/5/versions" => {
            (200, r#"[{"subject":"a-value","version":2},{"subject":"b-value","version":1}]"#.into())
        }
        "/api/schemas/ids/3" | "/api/schemas/ids/3/versions" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (200, "[]".into())
        }
        "/api/schemas/ids/4" | "/api/schemas/ids/4/versions" => (500, "{}".into()),
        "/api/schemas/ids/6" => (200, r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#.into()),
        "/api/schemas/ids/6/versions" => (200, "not json".into()),
        _ => (404, r#"{"error_code":40403,"message":"Schema not found"}"#.into()),
    }
}

/// A registry on a port of its own; returns its URL and what it was asked.
async fn registry() -> (String, Arc<Asked>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let asked = Arc::new(Asked::default());
    let counts = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let counts = counts.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        *counts.0.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let (status, body) = answer(&path).await;
                        let response = Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, asked)
}

fn client(url: String) -> Arc<Registry<String>> {
    let config = RegistryConfig { url, ca: None, timeout_ms: 300, retry_after_ms: 400, max_cached_schemas: 100 };
    Arc::new(Registry::new(config, |fetched| fetched.text.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_is_asked_once_however_many_want_it_at_once() {
    let (url, asked) = registry().await;
    let registry = client(url);
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let registry = registry.clone();
                async move { registry.schema(1).await }
            })
        })
        .collect();
    for lookup in lookups {
        let known = lookup.await.unwrap().unwrap();
        assert_eq!((known.id, known.kind, known.compiled.as_str()), (1, SchemaKind::Avro, r#"{"type":"string"}"#));
    }
    assert_eq!(asked.count("/api/schemas/ids/1"), 1);
    assert_eq!(asked.count("/api/schemas/ids/1/versions"), 1);
    assert_eq!(registry.cached_outcome(1).map(|k| k.unwrap().id), Some(1));
    assert!(registry.cached_outcome(9).is_none(), "never asked");
    let json = registry.schema(5).await.unwrap();
    assert_eq!(json.kind, SchemaKind::Json);
    assert!(registry.is_version_of(&json, "b-value").await.unwrap());
    assert!(!registry.is_version_of(&json, "c-value").await.unwrap());
    assert_eq!(asked.count("/api/schemas/ids/5/versions"), 1, "asked again only once the subjects are stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_named_bounded_in_time_and_remembered_for_a_while() {
    let (url, asked) = registry().await;
    let registry = client(url.clone());
    assert_eq!(registry.schema(2).await.unwrap_err(), LookupError::NotFound(2));
    assert_eq!(registry.schema(2).await.unwrap_err(), LookupError::NotFound(2));
    assert_eq!(asked.count("/api/schemas/ids/2"), 1, "a missing id is remembered");
    assert_eq!(registry.cached_outcome(2).map(|o| o.unwrap_err()), Some(LookupError::NotFound(2)));

    let started = Instant::now();
    let slow = registry.schema(3).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    assert!(slow.is_unavailable());
    assert!(slow.to_string().contains("within 300ms"), "{slow}");
    let started = Instant::now();
    assert_eq!(registry.schema(3).await.unwrap_err(), slow, "the failure is the answer for a while");
    assert!(started.elapsed() < Duration::from_millis(100));

    let failing = registry.schema(4).await.unwrap_err();
    assert_eq!(
        failing.to_string(),
        format!("the schema registry did not answer about schema 4: {url}/schemas/ids/4 answered HTTP 500")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(registry.cached_outcome(4).is_none(), "a failure stands for retry_after_ms only");
    let _ = registry.schema(4).await;
    assert_eq!(asked.count("/api/schemas/ids/4"), 2, "asked again after retry_after_ms");

    let garbled = registry.schema(6).await.unwrap_err();
    assert!(garbled.to_string().contains("not a list of subject versions"), "{garbled}");

    let down = client("http://127.0.0.1:1/api".into());
    let refused = down.schema(1).await.unwrap_err();
    assert!(refused.is_unavailable() && refused.to_string().contains("cannot connect"), "{refused}");
}

#[test]
fn bad_config_is_named() {
    let config = |url: &str| RegistryConfig {
        url: url.into(),
        ca: None,
        timeout_ms: 1,
        retry_after_ms: 0,
        max_cached_schemas: 1,
    };
    assert_eq!(config("http://registry:8081").check(), Ok(()));
    assert_eq!(config("registry:8081").check().unwrap_err().0, "url");
    assert_eq!(RegistryConfig { timeout_ms: 0, ..config("http://r") }.check().unwrap_err().0, "timeout_ms");
}
