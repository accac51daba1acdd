//! The audit log: one JSON object per line, for what a security team asks afterwards (who
//! authenticated, who failed and why, who was denied what). Lines are handed to a writer
//! thread, so the data path never waits on the disk; if the writer falls behind, lines are
//! dropped and counted rather than slowing clients down.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;

/// Lines that may wait for the writer before new ones are dropped.
const BACKLOG: usize = 65_536;

/// Where audit lines go.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file to append to, or `-` for standard output.
    pub path: PathBuf,
    /// Also write one line per closed connection with its traffic per topic.
    #[serde(default)]
    pub connection_summaries: bool,
}

/// Records and bytes of one topic on one connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TopicTotals {
    pub records: u64,
    pub bytes: u64,
}

/// What one connection did, written when it closes.
#[derive(Debug, Serialize)]
pub struct ConnectionEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
    pub client: SocketAddr,
    pub listener: &'a str,
    pub duration_ms: u64,
    pub produced: std::collections::BTreeMap<String, TopicTotals>,
    pub fetched: std::collections::BTreeMap<String, TopicTotals>,
}

/// One authentication attempt.
#[derive(Debug, Serialize)]
pub struct AuthenticationEvent<'a> {
    /// `mtls`, `tls` (no client certificate) or `fixed` (the configured principal).
    pub mechanism: &'a str,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
    pub client: SocketAddr,
    pub listener: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// A request (or part of one) the policy denied.
#[derive(Debug, Serialize)]
pub struct AuthorizationEvent<'a> {
    pub principal: &'a str,
    /// The protocol operation, e.g. `Produce`.
    pub api: &'a str,
    /// The policy operation that was missing, e.g. `write`.
    pub operation: &'a str,
    pub resource_type: &'a str,
    pub resource: &'a str,
    pub client: SocketAddr,
    pub listener: &'a str,
}

/// A handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    lines: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens the target and starts the writer thread.
    pub fn open(config: &AuditConfig) -> std::io::Result<Self> {
        let mut sink: Box<dyn Write + Send> = if config.path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(&config.path)?)
        };
        let (lines, rx) = sync_channel::<String>(BACKLOG);
        std::thread::Builder::new().name("weir-audit".into()).spawn(move || {
            for line in rx {
                if sink.write_all(line.as_bytes()).and_then(|_| sink.flush()).is_err() {
                    eprintln!("weir: cannot write the audit log; audit lines are being lost");
                }
            }
        })?;
        Ok(Self { lines, dropped: Arc::new(AtomicU64::new(0)) })
    }

    pub fn authentication(&self, event: &AuthenticationEvent<'_>) {
        self.record("authentication", event);
    }

    /// Denials only: allowed requests are the data path and are not written one by one.
    pub fn authorization(&self, event: &AuthorizationEvent<'_>) {
        #[derive(Serialize)]
        struct Denied<'a, 'b> {
            decision: &'static str,
            #[serde(flatten)]
            event: &'a AuthorizationEvent<'b>,
        }
        self.record("authorization", &Denied { decision: "deny", event });
    }

    pub fn connection(&self, event: &ConnectionEvent<'_>) {
        self.record("connection", event);
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn record(&self, kind: &str, event: &impl Serialize) {
        #[derive(Serialize)]
        struct Line<'a, E> {
            timestamp: String,
            event: &'a str,
            #[serde(flatten)]
            details: &'a E,
        }
        let line = Line { timestamp: now_rfc3339(), event: kind, details: event };
        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.lines.try_send(text) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn now_rfc3339() -> String {
    crate::utc::Utc::now().rfc3339_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_object_per_line() {
        let path = std::env::temp_dir().join(format!("weir-audit-{}.jsonl", std::process::id()));
        let log = AuditLog::open(&AuditConfig { path: path.clone(), connection_summaries: false }).unwrap();
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        log.authentication(&AuthenticationEvent {
            mechanism: "mtls",
            success: true,
            principal: Some("spiffe://weir.test/ns/a/sa/b"),
            client,
            listener: "bootstrap",
            reason: None,
        });
        log.authentication(&AuthenticationEvent {
            mechanism: "mtls",
            success: false,
            principal: None,
            client,
            listener: "broker-1",
            reason: Some("certificate expired"),
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["event"], "authentication");
        assert_eq!(lines[0]["success"], true);
        assert_eq!(lines[0]["principal"], "spiffe://weir.test/ns/a/sa/b");
        assert_eq!(lines[1]["reason"], "certificate expired");
        assert!(lines[1].get("principal").is_none());
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn timestamps_are_calendar_dates() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 24, "{ts}");
        let year: i32 = ts[..4].parse().unwrap();
        assert!((2024..2200).contains(&year), "{ts}");
        assert_eq!(&ts[4..5], "-");
        assert_eq!(&ts[10..11], "T");
    }
}
