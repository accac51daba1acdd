//! Traces: W3C trace context (the `traceparent` a message carries) and spans exported to an
//! OpenTelemetry collector or trace backend over OTLP/HTTP (JSON encoding). Protocol-free:
//! a proxy says what its spans are; this module batches them and sends them, off the data
//! path, never holding a request up (a full queue drops spans, and counts them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A position in a trace: which trace, which span in it, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); a later version is read
    /// by the same fields, as the spec asks. None for anything else, all-zero ids included.
    pub fn parse(traceparent: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(traceparent).ok()?.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version = u8::from_str_radix(version, 16).ok().filter(|_| version.len() == 2)?;
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
        let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
        let flags = u8::from_str_radix(flags, 16).ok().filter(|_| flags.len() == 2)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// As a `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", to_hex(&self.trace_id), to_hex(&self.span_id), u8::from(self.sampled))
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// Lower-case hex, as trace ids are written.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// New random ids.
pub struct Ids(SystemRandom);

impl Default for Ids {
    fn default() -> Self {
        Ids(SystemRandom::new())
    }
}

impl Ids {
    pub fn trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        while id == [0; 16] {
            let _ = self.0.fill(&mut id);
        }
        id
    }

    pub fn span_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        while id == [0; 8] {
            let _ = self.0.fill(&mut id);
        }
        id
    }

    /// Whether to sample, with probability `ratio`.
    pub fn sample(&self, ratio: f64) -> bool {
        if ratio >= 1.0 {
            return true;
        }
        let mut draw = [0u8; 8];
        let _ = self.0.fill(&mut draw);
        (u64::from_be_bytes(draw) >> 11) as f64 / (1u64 << 53) as f64 <= ratio && ratio > 0.0
    }
}

/// What a span is of, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Text(String),
    Int(i64),
}

impl From<&str> for Attribute {
    fn from(text: &str) -> Self {
        Attribute::Text(text.to_owned())
    }
}

impl From<String> for Attribute {
    fn from(text: String) -> Self {
        Attribute::Text(text)
    }
}

impl From<i64> for Attribute {
    fn from(n: i64) -> Self {
        Attribute::Int(n)
    }
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Attribute)>,
    /// Spans of other traces this one follows from.
    pub links: Vec<TraceContext>,
    /// Set when what the span stands for failed.
    pub error: Option<String>,
}

fn nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
}

fn attribute(key: &str, value: &Attribute) -> Value {
    match value {
        Attribute::Text(text) => json!({"key": key, "value": {"stringValue": text}}),
        // OTLP's JSON writes 64-bit integers as strings.
        Attribute::Int(n) => json!({"key": key, "value": {"intValue": n.to_string()}}),
    }
}

impl Span {
    fn to_json(&self) -> Value {
        let mut span = json!({
            "traceId": to_hex(&self.trace_id),
            "spanId": to_hex(&self.span_id),
            "name": self.name,
            "kind": self.kind as i32,
            "startTimeUnixNano": nanos(self.start),
            "endTimeUnixNano": nanos(self.end),
            "attributes": self.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        });
        if let Some(parent) = &self.parent {
            span["parentSpanId"] = to_hex(parent).into();
        }
        if !self.links.is_empty() {
            span["links"] = self
                .links
                .iter()
                .map(|l| json!({"traceId": to_hex(&l.trace_id), "spanId": to_hex(&l.span_id)}))
                .collect();
        }
        if let Some(error) = &self.error {
            span["status"] = json!({"code": 2, "message": error});
        }
        span
    }
}

/// The OTLP/HTTP request body of `spans`, from a service of these resource attributes.
pub fn export_body(resource: &[(String, String)], spans: &[Span]) -> Vec<u8> {
    let resource: Vec<Value> = resource.iter().map(|(k, v)| attribute(k, &Attribute::Text(v.clone()))).collect();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": resource},
        "scopeSpans": [{"scope": {"name": "weir"}, "spans": spans.iter().map(Span::to_json).collect::<Vec<_>>()}],
    }]});
    body.to_string().into_bytes()
}

/// Where spans go: the sidecar's `otlp:` config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL (`http://host:4318`); spans are POSTed to
    /// `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the spans (default `weir-sidecar`).
    #[serde(default = "default_service")]
    pub service_name: String,
    /// The CA an `https://` endpoint is checked against (default: the system's).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Spans waiting to be sent; beyond, new spans are dropped (and counted).
    #[serde(default = "default_queue")]
    pub max_queued_spans: usize,
    /// How often spans are sent (sooner when 512 are waiting).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// How long one export may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_service() -> String {
    "weir-sidecar".into()
}
fn default_queue() -> usize {
    8192
}
fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    5000
}

impl OtlpConfig {
    /// The field that is wrong, and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(("endpoint", "must start with http:// or https://".into()));
        }
        if self.max_queued_spans == 0 || self.interval_ms == 0 || self.timeout_ms == 0 {
            return Err(("max_queued_spans", "max_queued_spans, interval_ms and timeout_ms are at least 1".into()));
        }
        Ok(())
    }
}

/// The most spans in one export.
const BATCH: usize = 512;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Where a proxy hands its finished spans: a bounded queue to the exporter task.
pub struct SpanSink {
    queue: mpsc::Sender<Span>,
    /// `weir_otlp_spans_total{outcome}`: exported, dropped (queue full), failed (export failed).
    counts: Family<Outcome, Counter>,
}

impl SpanSink {
    /// Queues a span for export; drops it when the queue is full.
    pub fn send(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.counts.get_or_create(&Outcome { outcome: "dropped" }).inc();
        }
    }

    /// Spans with this outcome so far: `exported`, `dropped`, `failed`.
    pub fn count(&self, outcome: &'static str) -> u64 {
        self.counts.get_or_create(&Outcome { outcome }).get()
    }

    /// Starts the exporter task (on the current runtime): spans are sent every
    /// `interval_ms`, or as soon as a batch is full. Its counts go into `registry`.
    pub fn start(config: OtlpConfig, resource: Vec<(String, String)>, registry: &mut Registry) -> Arc<SpanSink> {
        let (queue, mut spans) = mpsc::channel(config.max_queued_spans);
        let counts = Family::<Outcome, Counter>::default();
        registry.register(
            "weir_otlp_spans",
            "Spans handed to the OTLP exporter, by outcome (exported, dropped: the queue was full, failed: the export failed)",
            counts.clone(),
        );
        let sink = Arc::new(SpanSink { queue, counts: counts.clone() });
        let mut resource = resource;
        resource.insert(0, ("service.name".into(), config.service_name.clone()));
        let url = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
        let ca = crate::http_get::ca_or_system(config.ca.as_deref());
        tokio::spawn(async move {
            let interval = Duration::from_millis(config.interval_ms);
            let timeout = Duration::from_millis(config.timeout_ms);
            let mut batch = Vec::with_capacity(BATCH);
            let mut warned_at: Option<std::time::Instant> = None;
            loop {
                let deadline = tokio::time::Instant::now() + interval;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, spans.recv()).await {
                        Ok(Some(span)) => batch.push(span),
                        Ok(None) if batch.is_empty() => return,
                        Ok(None) | Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let body = export_body(&resource, &batch);
                let post = crate::http_get::post(&url, "application/json", body.into(), &ca, 64 * 1024);
                let outcome = match tokio::time::timeout(timeout, post).await {
                    Ok(Ok(answer)) if answer.status.is_success() => Ok(()),
                    Ok(Ok(answer)) => Err(format!("{url} answered {}", answer.status)),
                    Ok(Err(err)) => Err(format!("{url}: {err}")),
                    Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
                };
                let spent = batch.len() as u64;
                match outcome {
                    Ok(()) => counts.get_or_create(&Outcome { outcome: "exported" }).inc_by(spent),
                    Err(why) => {
                        // Once a minute at most: a collector down must not flood the log.
                        if warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                            tracing::warn!("spans not exported: {why}");
                            warned_at = Some(std::time::Instant::now());
                        }
                        counts.get_or_create(&Outcome { outcome: "failed" }).inc_by(spent)
                    }
                };
                batch.clear();
            }
        });
        sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_the_w3c_spec_says() {
        let context = TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert!(context.sampled);
        assert_eq!(to_hex(&context.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let later = TraceContext::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").unwrap();
        assert!(!later.sampled);
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
            b"\xff\xfe",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn spans_are_written_as_otlp_json() {
        let ids = Ids::default();
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        let link = TraceContext { trace_id: [1; 16], span_id: [2; 8], sampled: true };
        let span = Span {
            trace_id,
            span_id,
            parent: Some([3; 8]),
            name: "produce orders".into(),
            kind: SpanKind::Producer,
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_500_000),
            attributes: vec![("messaging.system", "kafka".into()), ("messaging.kafka.offset", 42i64.into())],
            links: vec![link],
            error: None,
        };
        let body: Value =
            serde_json::from_slice(&export_body(&[("service.name".into(), "svc".into())], &[span])).unwrap();
        let written = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(written["traceId"], to_hex(&trace_id));
        assert_eq!(written["parentSpanId"], "0303030303030303");
        assert_eq!(written["kind"], 4);
        assert_eq!(written["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(written["attributes"][1]["value"]["intValue"], "42");
        assert_eq!(written["links"][0]["spanId"], "0202020202020202");
        assert_eq!(body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "svc");
        assert!(ids.sample(1.0) && !ids.sample(0.0));
        let hits = (0..10_000).filter(|_| ids.sample(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }
}
