//! Tracing through record headers (see [`crate::traces`]).
//!
//! On produce, the records of covered topics are read: each distinct sampled `traceparent`
//! gets a produce span, a child of the span it names; the records of a batch that carry none
//! (or one that cannot be read) start a new trace, sampled at `sample_ratio`, and get a
//! `traceparent` naming the batch's produce span (the batch is written again with the
//! client's header kept; an unreadable one goes). A batch whose records all carry one goes
//! on as the same bytes. Produce spans end when the broker answers, with the offset it gave.
//! On fetch, each distinct sampled `traceparent` in the records fetched of covered topics
//! gets a fetch span, a child of the span it names: the producer's, so the consumer's fetch
//! joins the producer's trace. The fetched records are read as a records pass (the response
//! streams on; each partition's spans go once it has passed). At most [`MAX_SPANS`] spans per
//! request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use weir_core::otlp::{Attribute, Ids, Span, SpanKind, SpanSink, TraceContext};
use weir_core::policy::Pattern;
use weir_wire::batch::{rewrite_batch, BatchHeader, NewRecord};
use weir_wire::record_view::{batch_records, RecordView};

use crate::answers::{replace_produce_records, ProduceTopic};
use crate::filter::{later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{pass_whole_response, PassNote, PassOutcome, RecordsPass, ResponseContext, Services};
use crate::filters::{fetch_may_carry, unknown_produce_topic_ids};
use crate::quota::ANONYMOUS;
use crate::snapshot::Snapshot;
use crate::traces::{TraceRules, TRACEPARENT};

/// The most spans one request makes.
pub const MAX_SPANS: usize = 64;

/// What a fetch span is of: a trace context (trace, the producer's span) in one partition.
type Fetched = ([u8; 16], [u8; 8]);

/// A produce span waiting for the broker's answer.
struct ProduceSpan {
    topic: ProduceTopic,
    name: String,
    partition: i32,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    records: i64,
    bytes: i64,
    /// The index (in the partition's records) of its first record.
    first: i64,
}

struct ProduceNote {
    start: SystemTime,
    spans: Vec<ProduceSpan>,
}

/// Left on a Produce request for its answer (a Fetch request leaves a [`FetchSpans`] pass).
struct Note(ProduceNote, String);

pub(crate) struct TraceFilter {
    rules: Option<Arc<TraceRules>>,
    topics: Arc<[Pattern]>,
    sink: Option<Arc<SpanSink>>,
    principal: String,
    ids: Ids,
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl TraceFilter {
    pub(crate) fn new(
        snapshot: &Snapshot,
        connection: &ConnectionInfo,
        sink: Option<Arc<SpanSink>>,
        decompressed_limit: usize,
    ) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let mut filter = Self {
            rules: None,
            topics: Arc::new([]),
            sink,
            principal,
            ids: Ids::default(),
            decompressed_limit,
            scratch: Vec::new(),
        };
        filter.take(snapshot);
        filter
    }

    fn take(&mut self, snapshot: &Snapshot) {
        self.topics = snapshot.traces.as_ref().map(|rules| rules.patterns()).unwrap_or_default().into();
        self.rules = snapshot.traces.clone();
    }

    /// Reads the produced records of covered topics, adds `traceparent` where a sampled new
    /// trace starts, and notes the spans for the broker's answer.
    fn produce(&mut self, cx: &mut RequestContext<'_>) -> Result<RequestAction, FilterError> {
        let ratio = self.rules.as_ref().map_or(0.0, |r| r.sample_ratio);
        let ids = cx.services.topic_ids();
        let (limit, scratch, tracer) = (self.decompressed_limit, &mut self.scratch, &self.ids);
        let topics = &self.topics;
        let mut spans: Vec<ProduceSpan> = Vec::new();
        let mut replacements: Vec<(ProduceTopic, i32, Bytes)> = Vec::new();
        let acks = weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, records| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            if !traced(topics, &name) {
                return;
            }
            let mut out: Option<BytesMut> = None;
            let mut index = 0i64;
            let mut done = 0;
            for batch in weir_wire::records::batches(records) {
                // The batch written again with `traceparent` added, or None: it goes on as it is.
                let rewritten: Option<BytesMut> = 'batch: {
                    let Some(header) = BatchHeader::read(batch.bytes).filter(|h| !h.is_control()) else {
                        break 'batch None;
                    };
                    // Unreadable records go on unread: tracing refuses nothing.
                    let Ok(Ok(views)) = batch_records(batch.bytes, limit, scratch)
                        .map(|records| records.collect::<Result<Vec<RecordView<'_>>, _>>())
                    else {
                        index += i64::from(header.records.max(0));
                        break 'batch None;
                    };
                    let mut new_trace: Option<(TraceContext, usize)> = None;
                    for view in &views {
                        let context = view.headers().find(|(k, _)| *k == TRACEPARENT.as_bytes()).and_then(|(_, v)| v);
                        match context.and_then(TraceContext::parse) {
                            Some(context) if context.sampled => {
                                let found = spans.iter().position(|s| {
                                    s.trace_id == context.trace_id
                                        && s.parent == Some(context.span_id)
                                        && s.partition == partition
                                        && s.name == *name
                                });
                                match found {
                                    Some(at) => {
                                        spans[at].records += 1;
                                        spans[at].bytes += view.size as i64;
                                    }
                                    None if spans.len() < MAX_SPANS => spans.push(ProduceSpan {
                                        topic: ProduceTopic::of(topic),
                                        name: name.to_string(),
                                        partition,
                                        trace_id: context.trace_id,
                                        span_id: tracer.span_id(),
                                        parent: Some(context.span_id),
                                        records: 1,
                                        bytes: view.size as i64,
                                        first: index,
                                    }),
                                    None => {}
                                }
                            }
                            Some(_) => {}
                            None => {
                                if new_trace.is_none() && spans.len() < MAX_SPANS && tracer.sample(ratio) {
                                    let context = TraceContext {
                                        trace_id: tracer.trace_id(),
                                        span_id: tracer.span_id(),
                                        sampled: true,
                                    };
                                    spans.push(ProduceSpan {
                                        topic: ProduceTopic::of(topic),
                                        name: name.to_string(),
                                        partition,
                                        trace_id: context.trace_id,
                                        span_id: context.span_id,
                                        parent: None,
                                        records: 0,
                                        bytes: 0,
                                        first: index,
                                    });
                                    new_trace = Some((context, spans.len() - 1));
                                }
                                if let Some((_, at)) = new_trace {
                                    spans[at].records += 1;
                                    spans[at].bytes += view.size as i64;
                                }
                            }
                        }
                        index += 1;
                    }
                    let Some((context, _)) = new_trace else { break 'batch None };
                    let value = context.traceparent();
                    let changed: Vec<NewRecord<'_>> = views
                        .iter()
                        .map(|view| {
                            let mut record = NewRecord::from_view(view, header.base_timestamp);
                            let own = view.headers().find(|(k, _)| *k == TRACEPARENT.as_bytes()).and_then(|(_, v)| v);
                            if own.and_then(TraceContext::parse).is_none() {
                                record.headers.retain(|(k, _)| *k != TRACEPARENT.as_bytes());
                                record.headers.push((TRACEPARENT.as_bytes(), Some(value.as_bytes())));
                            }
                            record
                        })
                        .collect();
                    Some(rewrite_batch(&header, &changed))
                };
                // Batches before the first rewritten one are copied when it comes; every one
                // after it is copied (rewritten or not): none may be left out.
                match (rewritten, &mut out) {
                    (Some(rewritten), None) => {
                        let mut started = BytesMut::with_capacity(records.len() + records.len() / 8);
                        started.extend_from_slice(&records[..done]);
                        started.extend_from_slice(&rewritten);
                        out = Some(started);
                    }
                    (Some(rewritten), Some(out)) => out.extend_from_slice(&rewritten),
                    (None, Some(out)) => out.extend_from_slice(batch.bytes),
                    (None, None) => {}
                }
                done += batch.size;
            }
            if let Some(mut out) = out {
                out.extend_from_slice(&records[done..]);
                replacements.push((ProduceTopic::of(topic), partition, out.freeze()));
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        crate::filters::release_scratch(&mut self.scratch);
        replace_produce_records(cx, &replacements)?;
        let note = ProduceNote { start: SystemTime::now(), spans };
        if note.spans.is_empty() {
            return Ok(RequestAction::Continue);
        }
        if acks == 0 {
            // No answer comes: the spans end here, without offsets.
            self.finish_produce(note, None, cx.header.client_id_str());
        } else {
            let client_id = cx.header.client_id_str().to_owned();
            cx.remember(Note(note, client_id));
        }
        Ok(RequestAction::Continue)
    }

    fn finish_produce(&self, note: ProduceNote, answer: Option<&ProduceResponse>, client_id: &str) {
        let Some(sink) = &self.sink else { return };
        let end = SystemTime::now();
        for pending in note.spans {
            let mut span = Span {
                trace_id: pending.trace_id,
                span_id: pending.span_id,
                parent: pending.parent,
                name: format!("produce {}", pending.name),
                kind: SpanKind::Producer,
                start: note.start,
                end,
                attributes: Vec::with_capacity(10),
                links: Vec::new(),
                error: None,
            };
            common(&mut span, client_id, &self.principal);
            span.attributes.push(("messaging.operation.type", "send".into()));
            span.attributes.push(("messaging.destination.name", pending.name.clone().into()));
            span.attributes.push(("messaging.destination.partition.id", pending.partition.to_string().into()));
            span.attributes.push(("messaging.batch.message_count", pending.records.into()));
            span.attributes.push(("weir.record_bytes", pending.bytes.into()));
            let answered = answer.and_then(|answer| {
                answer
                    .responses
                    .iter()
                    .filter(|t| ProduceTopic::of_entry(&t.name, t.topic_id) == pending.topic)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == pending.partition)
            });
            if let Some(partition) = answered {
                if partition.error_code != 0 {
                    let error = kafka_protocol::error::ResponseError::try_from_code(partition.error_code)
                        .map_or_else(|| format!("error {}", partition.error_code), |e| format!("{e:?}"));
                    span.error = Some(error);
                } else if partition.base_offset >= 0 {
                    span.attributes.push(("messaging.kafka.offset", (partition.base_offset + pending.first).into()));
                }
            }
            sink.send(span);
        }
    }
}

impl Filter for TraceFilter {
    fn name(&self) -> &'static str {
        "trace"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        matches!(api, ApiKey::Produce | ApiKey::Fetch) && !self.topics.is_empty() && self.sink.is_some()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        if cx.header.api_key == ApiKey::Fetch {
            let Some(sink) = self.sink.clone() else { return ready(Ok(RequestAction::Continue)) };
            let topics = &self.topics;
            return ready(fetch_may_carry(cx, |t| traced(topics, t)).map(|covered| {
                if covered {
                    cx.pass_records(Box::new(FetchSpans {
                        topics: self.topics.clone(),
                        sink,
                        principal: self.principal.clone(),
                        client_id: cx.header.client_id_str().to_owned(),
                        start: SystemTime::now(),
                        ids: Ids::default(),
                        spans_left: MAX_SPANS,
                        decompressed_limit: self.decompressed_limit,
                        scratch: Vec::new(),
                    }));
                }
                RequestAction::Continue
            }));
        }
        let unknown = match unknown_produce_topic_ids(cx) {
            Ok(unknown) => unknown,
            Err(err) => return ready(Err(err)),
        };
        if unknown.is_empty() {
            return ready(self.produce(cx));
        }
        later(async move {
            cx.services.resolve_topic_ids(&unknown).await;
            self.produce(cx)
        })
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        if cx.message.api_key() == ApiKey::Fetch {
            let Some(PassNote(mut pass)) = cx.take_note::<PassNote>() else { return ready(Ok(())) };
            return later(async move { pass_whole_response(cx, pass.as_mut()).await });
        }
        if let Some(Note(note, client_id)) = cx.take_note::<Note>() {
            let answer = cx.message.decoded::<ProduceResponse>().ok();
            self.finish_produce(note, answer, &client_id);
        }
        ready(Ok(()))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.take(snapshot);
    }
}

/// Whether the rules' topic patterns cover `topic`.
fn traced(topics: &[Pattern], topic: &str) -> bool {
    topics.iter().any(|p| p.matches(topic))
}

fn common(span: &mut Span, client_id: &str, principal: &str) {
    span.attributes.push(("messaging.system", "kafka".into()));
    span.attributes.push(("messaging.client.id", client_id.into()));
    span.attributes.push(("weir.principal", principal.into()));
}

/// One Fetch response's traced records: each distinct sampled context in a partition gets a
/// fetch span, sent once the partition has passed (the response may still be streaming).
/// Reads only; never changes or fails a partition.
struct FetchSpans {
    topics: Arc<[Pattern]>,
    sink: Arc<SpanSink>,
    principal: String,
    client_id: String,
    start: SystemTime,
    ids: Ids,
    /// How many more spans this response may make.
    spans_left: usize,
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl FetchSpans {
    fn partition(&mut self, topic: &str, partition: i32, records: &[u8]) {
        // Per context: records, bytes and the first record's offset.
        let mut found: HashMap<Fetched, (i64, i64, i64)> = HashMap::new();
        for batch in weir_wire::records::batches(records) {
            let Some(header) = BatchHeader::read(batch.bytes).filter(|h| !h.is_control()) else { continue };
            let Ok(views) = batch_records(batch.bytes, self.decompressed_limit, &mut self.scratch) else { continue };
            for view in views.map_while(Result::ok) {
                let context = view.headers().find(|(k, _)| *k == TRACEPARENT.as_bytes()).and_then(|(_, v)| v);
                let Some(context) = context.and_then(TraceContext::parse).filter(|c| c.sampled) else { continue };
                let key = (context.trace_id, context.span_id);
                if !found.contains_key(&key) && found.len() >= self.spans_left {
                    continue;
                }
                let offset = header.base_offset + i64::from(view.offset_delta);
                let entry = found.entry(key).or_insert((0, 0, offset));
                entry.0 += 1;
                entry.1 += view.size as i64;
            }
        }
        self.spans_left -= found.len();
        let end = SystemTime::now();
        for ((trace_id, parent), (records, bytes, first)) in found {
            let mut span = Span {
                trace_id,
                span_id: self.ids.span_id(),
                parent: Some(parent),
                name: format!("fetch {topic}"),
                kind: SpanKind::Consumer,
                start: self.start,
                end,
                attributes: Vec::with_capacity(10),
                links: Vec::new(),
                error: None,
            };
            common(&mut span, &self.client_id, &self.principal);
            span.attributes.push(("messaging.operation.type", "receive".into()));
            span.attributes.push(("messaging.destination.name", Attribute::Text(topic.to_owned())));
            span.attributes.push(("messaging.destination.partition.id", partition.to_string().into()));
            span.attributes.push(("messaging.kafka.offset", first.into()));
            span.attributes.push(("messaging.batch.message_count", records.into()));
            span.attributes.push(("weir.record_bytes", bytes.into()));
            self.sink.send(span);
        }
    }
}

impl RecordsPass for FetchSpans {
    fn covers(&self, topic: &str) -> bool {
        traced(&self.topics, topic)
    }

    fn partition<'a>(
        &'a mut self,
        _services: &'a dyn Services,
        topic: &'a str,
        partition: i32,
        records: &'a [u8],
        _out: &'a mut Vec<u8>,
    ) -> Hook<'a, PassOutcome> {
        FetchSpans::partition(self, topic, partition, records);
        ready(Ok(PassOutcome::Same))
    }
}
