//! `GET /topics/{topic}/events`: a Kafka topic as Server-Sent Events, for browsers
//! (`EventSource`) and anything else that reads a stream of lines.
//!
//! ```text
//! GET /topics/orders/events?from=earliest&format=json
//!
//! retry: 1000
//! id: 0-0.1-0.2-0                 (where the stream stands: sent first, with no data)
//!
//! id: 0-1.1-0.2-0
//! data: {"topic":"orders","key":"o-1","value":{"total":12},"partition":0,"offset":0,...}
//! ```
//!
//! Where to start: `from=latest` (the default: what is written from now on), `from=earliest`,
//! `time=` (milliseconds since the epoch, or an RFC 3339 time) — the first record at or after
//! it on each partition — or an event id. Each event's id names, per partition, the next
//! offset the stream would send: a client that reconnects with it (`EventSource` sends it as
//! `Last-Event-ID` by itself) misses nothing and sees nothing twice. Partitions an id does not
//! name start at their beginning.
//!
//! `format=text` (the default) sends each record's value as the event's data (a value that is
//! not UTF-8 goes base64-encoded as an event of type `binary`); `format=json` and
//! `format=binary` send the whole record as the consumer API answers records.
//!
//! A stream joins the topic's live tail (one Kafka reader for every stream and MQTT subscriber
//! of the gateway) and replays from Kafka what came before its join. A client that reads more
//! slowly than the topic is written holds at most `max_queued_events` at the gateway: beyond
//! that it leaves the tail and, once caught up by replay, joins it again. A policy change that
//! takes away `read` on the topic ends the stream with an `error` event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use weir_core::rules::CurrentRules;
use weir_gateway::authz::{allowed, KafkaAuthz};
use weir_gateway::replay::{replay, Range};
use weir_gateway::{KafkaConfig, Record, Start, Subscriber, Tail, TailError};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::StatusCode;

use crate::api::ApiError;
use crate::records::{Format, RecordOut};

/// What a stream sends of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// The value as the data.
    Text,
    /// The whole record as JSON, keys and values in `Format`.
    Record(Format),
}

/// Where a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    At(Start),
    /// The next offset of each partition (an event id); partitions not named: their start.
    Positions(Vec<(i32, i64)>),
}

/// A stream's request, read from its query and `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    pub begin: Begin,
    pub format: EventFormat,
}

/// Reads `?from=…&time=…&format=…`; `Last-Event-ID`, when sent, says where to start.
pub fn parse_request(query: Option<&str>, last_event_id: Option<&str>) -> Result<EventsRequest, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let (mut begin, mut format) = (Begin::At(Start::Latest), EventFormat::Text);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| bad(format!("query parameter `{name}`: bad %-encoding")))?;
        begin = match (name, value.as_str()) {
            ("from", "latest") => Begin::At(Start::Latest),
            ("from", "earliest") => Begin::At(Start::Earliest),
            ("from", id) => Begin::Positions(
                parse_event_id(id)
                    .map_err(|why| bad(format!("from={id}: expected latest, earliest or an event id ({why})")))?,
            ),
            ("time", time) => {
                Begin::At(Start::Time(parse_time(time).map_err(|why| bad(format!("time={time}: {why}")))?))
            }
            ("format", name) => {
                format = match name {
                    "text" => EventFormat::Text,
                    "json" => EventFormat::Record(Format::Json),
                    "binary" => EventFormat::Record(Format::Binary),
                    other => return Err(bad(format!("format={other}: expected text, json or binary"))),
                };
                continue;
            }
            (other, _) => return Err(bad(format!("unknown query parameter `{other}`: expected from, time or format"))),
        };
    }
    if let Some(id) = last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
        begin = Begin::Positions(parse_event_id(id).map_err(|why| bad(format!("Last-Event-ID {id}: {why}")))?);
    }
    Ok(EventsRequest { begin, format })
}

/// `0-15.1-7`: partition 0 at offset 15, partition 1 at offset 7.
pub fn parse_event_id(id: &str) -> Result<Vec<(i32, i64)>, String> {
    let mut positions = Vec::new();
    for part in id.split('.') {
        let parsed = part.split_once('-').and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)));
        match parsed {
            Some((partition, offset)) if partition >= 0 && offset >= 0 => positions.push((partition, offset)),
            _ => return Err(format!("`{part}` is not PARTITION-OFFSET")),
        }
    }
    positions.sort_unstable();
    positions.dedup_by_key(|(p, _)| *p);
    Ok(positions)
}

fn event_id(positions: &BTreeMap<i32, i64>, into: &mut BytesMut) {
    use std::fmt::Write;
    for (i, (partition, offset)) in positions.iter().enumerate() {
        let _ = write!(into, "{}{partition}-{offset}", if i == 0 { "" } else { "." });
    }
}

/// Milliseconds since the epoch, or an RFC 3339 time.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected milliseconds since 1970 or an RFC 3339 time like 2026-12-03T18:00:00Z ({e})"))?;
    Ok((time.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One event: `id`, then the record in `format` as `data` lines.
fn event(record: &Record, format: EventFormat, positions: &BTreeMap<i32, i64>) -> Bytes {
    let mut out = BytesMut::with_capacity(record.value.len() + 64);
    out.put_slice(b"id: ");
    event_id(positions, &mut out);
    out.put_u8(b'\n');
    match format {
        EventFormat::Text => match std::str::from_utf8(&record.value) {
            Ok(text) => data_lines(text, &mut out),
            Err(_) => {
                out.put_slice(b"event: binary\n");
                data_lines(&B64.encode(&record.value), &mut out);
            }
        },
        EventFormat::Record(format) => {
            let json = serde_json::to_string(&RecordOut { record, format }).unwrap_or_default();
            data_lines(&json, &mut out);
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// `text` as `data:` lines (SSE ends a line at CR, LF or CRLF; the client joins them with LF).
fn data_lines(text: &str, out: &mut BytesMut) {
    for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
}

/// What a stream needs of the gateway.
pub struct Source {
    pub tail: Arc<Tail>,
    /// What the stream's principal read of the topic, for the mesh's topology.
    pub delivered: Arc<weir_core::flows::FlowCounters>,
    pub kafka: KafkaConfig,
    pub rules: CurrentRules,
    pub max_queued: usize,
    pub keep_alive: Duration,
}

/// A stream's place on the live tail: records go into a bounded queue; when it is full the
/// tail drops it (and with it the queue's sender, which ends the queue once drained).
struct Queue(mpsc::Sender<Arc<Record>>);

impl Subscriber for Queue {
    fn offer(&self, record: &Arc<Record>) -> bool {
        match self.0.try_send(record.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => false,
        }
    }
}

/// Where the stream begins on each partition, before anything is sent; an unknown topic or a
/// Kafka that cannot be asked is the request's error.
pub async fn resolve(source: &Source, topic: &str, begin: &Begin) -> Result<Option<Vec<(i32, i64)>>, ApiError> {
    let failed = |error: TailError| match error {
        TailError::NoTopic(_) => ApiError::new(StatusCode::NOT_FOUND, error.to_string()),
        TailError::Kafka { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        TailError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    };
    match begin {
        // Where the live tail joins: found when the stream starts.
        Begin::At(Start::Latest) => {
            source.tail.offsets(topic, Start::Latest).await.map_err(failed)?;
            Ok(None)
        }
        Begin::At(start) => Ok(Some(source.tail.offsets(topic, *start).await.map_err(failed)?)),
        Begin::Positions(named) => {
            let mut positions = source.tail.offsets(topic, Start::Earliest).await.map_err(failed)?;
            for (partition, offset) in &mut positions {
                if let Ok(at) = named.binary_search_by_key(partition, |(p, _)| *p) {
                    *offset = named[at].1;
                }
            }
            Ok(Some(positions))
        }
    }
}

/// Sends `topic`'s records to `sink` from `positions` (None: from where the tail joins) until
/// the client goes (`sink` closes), the principal loses `read` on the topic, or `stop`.
pub async fn stream(
    source: Source,
    topic: Arc<str>,
    principal: String,
    positions: Option<Vec<(i32, i64)>>,
    format: EventFormat,
    sink: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) {
    let mut rules = source.rules.clone();
    let mut positions: Option<BTreeMap<i32, i64>> = positions.map(|p| p.into_iter().collect());
    let mut keep_alive = tokio::time::interval(source.keep_alive);
    keep_alive.tick().await;
    let mut first = true;
    'join: loop {
        let (queue, mut live) = mpsc::channel(source.max_queued);
        let membership = match source.tail.join(&topic, Arc::new(Queue(queue))).await {
            Ok(membership) => membership,
            Err(error) => {
                let _ = sink.send(error_event(&error.to_string())).await;
                return;
            }
        };
        let here = positions.get_or_insert_with(|| membership.from().iter().copied().collect());
        // Partitions the topic gained since the stream began: all of them.
        for (partition, _) in membership.from() {
            here.entry(*partition).or_insert(0);
        }
        if std::mem::take(&mut first) {
            // An EventSource waits `retry` ms before it reconnects (3 s unless told).
            let mut id = BytesMut::from(&b"retry: 1000\nid: "[..]);
            event_id(here, &mut id);
            id.put_slice(b"\n\n");
            if sink.send(id.freeze()).await.is_err() {
                return;
            }
        }
        let ranges: Vec<Range> = membership
            .from()
            .iter()
            .filter_map(|(partition, end)| {
                let start = here[partition];
                (start < *end).then(|| Range { topic: topic.clone(), partition: *partition, start, end: *end })
            })
            .collect();
        let (replayed_to, mut replayed) = mpsc::channel::<Replayed>(256);
        let replay_stop = stop.child_token();
        let _stop_replay = replay_stop.clone().drop_guard();
        let kafka = source.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let each = |record| replayed_to.blocking_send(Replayed::Record(record)).is_ok();
            let end = match replay(&kafka, &ranges, each, &replay_stop) {
                Ok(()) if replay_stop.is_cancelled() => return,
                Ok(()) => Replayed::Done,
                Err(error) => Replayed::Failed(error.to_string()),
            };
            let _ = replayed_to.blocking_send(end);
        });
        let mut replaying = true;
        loop {
            let record = tokio::select! {
                _ = stop.cancelled() => return,
                _ = sink.closed() => return,
                changed = rules.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let policy = rules.borrow_and_update().policy.clone();
                    let authz = policy.as_ref().map(|policy| KafkaAuthz::new(policy, Some(&principal)));
                    if !allowed(authz.as_ref(), &topic, false) {
                        let message = format!("{principal} may no longer read topic {topic}");
                        let _ = sink.send(error_event(&message)).await;
                        return;
                    }
                    continue;
                }
                _ = keep_alive.tick() => {
                    if sink.send(Bytes::from_static(b":\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                record = replayed.recv(), if replaying => match record {
                    Some(Replayed::Record(record)) => record,
                    Some(Replayed::Done) => {
                        replaying = false;
                        continue;
                    }
                    // Live records now would skip what the replay missed: the client reconnects
                    // with its last id instead.
                    Some(Replayed::Failed(error)) => {
                        tracing::warn!(%error, %topic, "replaying a topic for an event stream failed");
                        let _ = sink.send(error_event(&format!("reading {topic} from Kafka failed: {error}"))).await;
                        return;
                    }
                    None => return,
                },
                record = live.recv(), if !replaying => match record {
                    Some(record) => record,
                    // The tail dropped the stream (it fell behind): join again from here.
                    None => {
                        drop(membership);
                        continue 'join;
                    }
                },
            };
            let next = here.entry(record.partition).or_insert(0);
            if record.offset < *next {
                continue;
            }
            *next = record.offset + 1;
            if sink.send(event(&record, format, here)).await.is_err() {
                return;
            }
            source.delivered.count(1, (record.value.len() + record.key.as_ref().map_or(0, |k| k.len())) as u64);
        }
    }
}

/// What a replay hands the stream: its records, then whether it read every range.
enum Replayed {
    Record(Arc<Record>),
    Done,
    Failed(String),
}

/// An `error` event: the stream ends after it.
fn error_event(message: &str) -> Bytes {
    let mut out = BytesMut::from(&b"event: error\n"[..]);
    data_lines(&serde_json::json!({"message": message}).to_string(), &mut out);
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    #[test]
    fn a_stream_starts_where_its_query_or_last_event_id_says() {
        let req = |q: &str, id: Option<&str>| parse_request(Some(q), id);
        assert_eq!(
            req("", None).unwrap(),
            EventsRequest { begin: Begin::At(Start::Latest), format: EventFormat::Text }
        );
        assert_eq!(req("from=earliest&format=json", None).unwrap().begin, Begin::At(Start::Earliest));
        assert_eq!(req("format=binary", None).unwrap().format, EventFormat::Record(Format::Binary));
        assert_eq!(req("time=1700000000000", None).unwrap().begin, Begin::At(Start::Time(1_700_000_000_000)));
        assert_eq!(
            req("time=2023-11-14T22%3A13%3A20Z", None).unwrap().begin,
            Begin::At(Start::Time(1_700_000_000_000))
        );
        assert_eq!(req("from=1-7.0-15", None).unwrap().begin, Begin::Positions(vec![(0, 15), (1, 7)]));
        assert_eq!(req("from=latest", Some("2-3")).unwrap().begin, Begin::Positions(vec![(2, 3)]));
        for (query, says) in [
            ("from=yesterday", "from=yesterday"),
            ("from=0-x", "`0-x`"),
            ("time=noon", "time=noon"),
            ("format=xml", "format=xml"),
            ("colour=red", "`colour`"),
        ] {
            let error = req(query, None).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.message.contains(says), "{query}: {}", error.message);
        }
        assert!(req("", Some("0--1")).unwrap_err().message.contains("Last-Event-ID"));
    }

    #[test]
    fn an_event_carries_every_partitions_next_offset_and_its_value_as_data_lines() {
        let record = |value: &'static [u8]| Record {
            topic: Arc::from("orders"),
            partition: 1,
            offset: 6,
            timestamp: None,
            key: None,
            value: Bytes::from_static(value),
            headers: Vec::new(),
            derived: OnceLock::new(),
        };
        let positions: BTreeMap<i32, i64> = [(0, 15), (1, 7)].into();
        assert_eq!(
            &event(&record(b"one\r\ntwo"), EventFormat::Text, &positions)[..],
            b"id: 0-15.1-7\ndata: one\ndata: two\n\n"
        );
        assert_eq!(
            &event(&record(&[0xff, 0]), EventFormat::Text, &positions)[..],
            b"id: 0-15.1-7\nevent: binary\ndata: /wA=\n\n"
        );
        let json = event(&record(b"{\"n\": 1}"), EventFormat::Record(Format::Json), &positions);
        let json = std::str::from_utf8(&json).unwrap();
        assert!(
            json.starts_with("id: 0-15.1-7\ndata: {\"topic\":\"orders\",\"key\":null,\"value\":{\"n\": 1},"),
            "{json}"
        );
        assert_eq!(parse_event_id("0-15.1-7").unwrap(), vec![(0, 15), (1, 7)]);
    }
}
