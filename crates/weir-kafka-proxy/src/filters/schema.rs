//! Schema validation (see [`crate::schema_rules`]): every record of a produce request written
//! to a covered topic has its key and value judged by the rule's format (`weir_schema`), its
//! batch read in place (decompressed into a scratch buffer when compressed) and forwarded as
//! the very bytes that came when every record passes. A batch holding a record that does not
//! pass is refused as a broker refuses an invalid record: INVALID_RECORD, and from Produce v8
//! the partition's message and `record_errors` naming each such record. The rest of the
//! request is written.
//!
//! Schemas come from the registry, asked once per id and cached (`weir_schema::registry`);
//! a request naming a schema not cached waits for it (at most the registry's timeout), the
//! responses of earlier requests keeping their order. When the registry cannot say, the rule
//! decides: refuse with REQUEST_TIMED_OUT, which producers retry (fail closed, the default),
//! or write the records unchecked (fail open).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;
use weir_schema::judge::{judge, SchemaRegistry, Schemas, Verdict};
use weir_schema::registry::{Known, LookupError};
use weir_wire::record_view::batch_records;
use weir_wire::scan::TopicRef;

use crate::answers::{add_refused_answers, refuse_produce_partitions, PartitionRefusal, ProduceTopic};
use crate::filter::{
    later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext, ResponseContext,
};
use crate::quota::ANONYMOUS;
use crate::safeguard::MAX_RECORD_ERRORS;
use crate::schema_rules::{CoveredTopics, SchemaRule, WhenUnavailable};
use crate::snapshot::Snapshot;

/// Scratch space kept between requests; more is given back after the request that needed it.
const SCRATCH_KEPT: usize = 1 << 20;
/// Rounds of asking the registry for one request: the schemas one round fetched are judged
/// with in the next; a third round means the cache forgot them meanwhile.
const MAX_ROUNDS: usize = 3;

pub(crate) struct SchemaFilter {
    rules: Arc<[SchemaRule]>,
    /// The rules whose principals cover this connection's.
    mine: Vec<CoveredTopics>,
    principal: String,
    registry: Option<Arc<SchemaRegistry>>,
    /// The most a compressed batch may grow to when read (`limits.max_decompressed_batch_bytes`).
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

/// The registry as the judge sees it: none configured is a registry that cannot say.
struct Lookups<'a>(Option<&'a SchemaRegistry>);

impl Schemas for Lookups<'_> {
    fn known(&self, id: u32) -> Option<Result<Arc<Known<weir_schema::judge::Compiled>>, LookupError>> {
        match self.0 {
            Some(registry) => registry.known(id),
            None => Some(Err(LookupError::Unavailable {
                id,
                why: "no schema_registry is configured (it is read at start: restart the sidecar to add one)".into(),
            })),
        }
    }
}

/// What judging a request found.
#[derive(Default)]
struct Judged {
    refused: Vec<PartitionRefusal>,
    /// Schema ids to ask the registry about (with the subject a record needs them in).
    needs: Vec<(u32, String)>,
    /// Records judged, per rule and verdict, and records refused per rule: counted once the
    /// request is settled.
    verdicts: Vec<(String, &'static str, u64)>,
    refused_records: Vec<(String, u64)>,
}

/// One partition's verdict.
enum PartitionVerdict {
    Pass,
    Refuse { code: i16, message: String, record_errors: Vec<(i32, String)> },
}

/// Records judged per verdict label (`Fault::as_str`, `valid`, `unchecked`).
#[derive(Default)]
struct Tally(Vec<(&'static str, u64)>);

impl Tally {
    fn add(&mut self, verdict: &'static str) {
        match self.0.iter_mut().find(|(v, _)| *v == verdict) {
            Some((_, n)) => *n += 1,
            None => self.0.push((verdict, 1)),
        }
    }
}

impl SchemaFilter {
    pub(crate) fn new(
        snapshot: &Snapshot,
        connection: &ConnectionInfo,
        registry: Option<Arc<SchemaRegistry>>,
        decompressed_limit: usize,
    ) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.schema_validation.clone();
        let mut filter = Self { rules, mine: Vec::new(), principal, registry, decompressed_limit, scratch: Vec::new() };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self.rules.iter().filter(|r| r.covers_principal(principal)).map(CoveredTopics::new).collect();
    }

    /// Judges every covered partition with what the registry cache holds; when `settle`, a
    /// schema still not cached counts as one the registry could not give.
    fn judge_request(&mut self, cx: &RequestContext<'_>, settle: bool) -> Result<Judged, FilterError> {
        let ids = cx.services.topic_ids();
        let mut judged = Judged::default();
        let (mine, limit, scratch) = (&self.mine, self.decompressed_limit, &mut self.scratch);
        let schemas = Lookups(self.registry.as_deref());
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, records| {
            let learned;
            let name = match topic {
                TopicRef::Name(name) => name,
                // An id the cluster cannot name is no topic: the broker refuses it as such.
                TopicRef::Id(id) => match ids.name(&Uuid::from_bytes(id)) {
                    Some(name) => {
                        learned = name;
                        &*learned
                    }
                    None => return,
                },
            };
            for rule in mine.iter().filter(|rule| rule.covers(name)).map(|covered| &covered.rule) {
                let mut tally = Tally::default();
                let verdict = judge_partition(
                    rule,
                    name,
                    records,
                    limit,
                    scratch,
                    &schemas,
                    settle,
                    &mut judged.needs,
                    &mut tally,
                );
                judged.verdicts.extend(tally.0.into_iter().map(|(verdict, n)| (rule.name.clone(), verdict, n)));
                let Some(PartitionVerdict::Refuse { code, message, record_errors }) = verdict else { continue };
                judged.refused_records.push((rule.name.clone(), weir_wire::records::count_records(records)));
                tracing::debug!(partition, rule = rule.name, reason = message, "produce refused by schema validation");
                let topic = ProduceTopic::of(topic);
                judged.refused.push(PartitionRefusal { topic, partition, code, message, record_errors });
                break;
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        Ok(judged)
    }

    /// Asks the registry what `judged` needs, and judges again, until every record is
    /// judged (the last round counts what is still not cached as unchecked).
    async fn validate(
        &mut self,
        cx: &mut RequestContext<'_>,
        mut judged: Judged,
    ) -> Result<RequestAction, FilterError> {
        for round in 2..=MAX_ROUNDS {
            if let Some(registry) = self.registry.clone() {
                // Outcomes are cached, failures included: the next round judges with them.
                for (id, subject) in std::mem::take(&mut judged.needs) {
                    if let Ok(known) = registry.schema(id).await {
                        let _ = registry.is_version_of(&known, &subject).await;
                    }
                }
            }
            judged = self.judge_request(cx, round == MAX_ROUNDS)?;
            if judged.needs.is_empty() {
                break;
            }
        }
        settle(cx, judged)
    }
}

/// Acts on a judgement of every record: counts it, and refuses what it refused.
fn settle(cx: &mut RequestContext<'_>, judged: Judged) -> Result<RequestAction, FilterError> {
    let metrics = cx.services.metrics();
    for (rule, verdict, n) in &judged.verdicts {
        metrics.schema_records(rule, verdict, *n);
    }
    for (rule, n) in &judged.refused_records {
        metrics.schema_refused(rule, *n);
    }
    if judged.refused.is_empty() {
        return Ok(RequestAction::Continue);
    }
    refuse_produce_partitions(cx, &judged.refused)
}

/// Judges one partition's records by `rule`, each record's verdict tallied: None when it
/// needs schemas not cached yet (pushed onto `needs`), unless `settle`.
#[allow(clippy::too_many_arguments)]
fn judge_partition(
    rule: &SchemaRule,
    topic: &str,
    records: &[u8],
    limit: usize,
    scratch: &mut Vec<u8>,
    schemas: &Lookups<'_>,
    settle: bool,
    needs: &mut Vec<(u32, String)>,
    tally: &mut Tally,
) -> Option<PartitionVerdict> {
    let mut record_errors = Vec::new();
    let (mut refused, mut unavailable, mut pending, mut index_base) = (0usize, None, false, 0i32);
    let parts = [("key", rule.key), ("value", rule.value)];
    for batch in weir_wire::records::batches(records) {
        let batch_records = match batch_records(batch.bytes, limit, scratch) {
            Ok(records) => records,
            Err(err) => {
                let message = format!("{err} (rule `{}`)", rule.name);
                return Some(PartitionVerdict::Refuse {
                    code: ResponseError::InvalidRecord.code(),
                    message,
                    record_errors: Vec::new(),
                });
            }
        };
        let mut count = 0i32;
        for (index, record) in batch_records.enumerate() {
            count += 1;
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    let message = format!("{err} (rule `{}`)", rule.name);
                    let code = ResponseError::InvalidRecord.code();
                    return Some(PartitionVerdict::Refuse { code, message, record_errors: Vec::new() });
                }
            };
            let mut verdict = "valid";
            for (part, format) in parts {
                let (Some(format), Some(payload)) = (format, if part == "key" { record.key } else { record.value })
                else {
                    // No rule for it, or null: a keyless record, a tombstone.
                    continue;
                };
                let subject = format!("{topic}-{part}");
                match judge(format, payload, &subject, schemas) {
                    Verdict::Valid => {}
                    Verdict::Refused(fault, why) => {
                        refused += 1;
                        if record_errors.len() < MAX_RECORD_ERRORS {
                            let index = index_base + index as i32;
                            let why = format!("{part} of record {index}: {why} (rule `{}`)", rule.name);
                            record_errors.push((index, why));
                        }
                        verdict = fault.as_str();
                        break;
                    }
                    Verdict::Needs(id) if !settle => {
                        pending = true;
                        if !needs.iter().any(|(n, s)| *n == id && *s == subject) {
                            needs.push((id, subject));
                        }
                    }
                    Verdict::Needs(id) => {
                        unavailable.get_or_insert(format!("schema {id} was not kept in the schema cache"));
                        verdict = "unchecked";
                    }
                    Verdict::Unavailable(why) => {
                        unavailable.get_or_insert(why);
                        verdict = "unchecked";
                    }
                }
            }
            tally.add(verdict);
        }
        index_base += count;
    }
    if pending {
        return None;
    }
    if let Some((_, first)) = record_errors.first() {
        let message = match refused {
            1 => first.clone(),
            n => format!("{first}; {} more record(s) of the batch are invalid", n - 1),
        };
        let code = ResponseError::InvalidRecord.code();
        return Some(PartitionVerdict::Refuse { code, message, record_errors });
    }
    if let Some(why) = unavailable {
        if rule.on_registry_unavailable == WhenUnavailable::Refuse {
            let message = format!("{why}; the records were not written (rule `{}`)", rule.name);
            let code = ResponseError::RequestTimedOut.code();
            return Some(PartitionVerdict::Refuse { code, message, record_errors: Vec::new() });
        }
    }
    Some(PartitionVerdict::Pass)
}

impl Filter for SchemaFilter {
    fn name(&self) -> &'static str {
        "schema"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Produce && !self.mine.is_empty()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let unknown = match crate::filters::unknown_produce_topic_ids(cx) {
            Ok(unknown) => unknown,
            Err(err) => return ready(Err(err)),
        };
        if unknown.is_empty() {
            // The common case, without a wait: every schema the records name is cached.
            let judged = match self.judge_request(cx, false) {
                Ok(judged) => judged,
                Err(err) => return ready(Err(err)),
            };
            if judged.needs.is_empty() {
                return ready(settle(cx, judged));
            }
            return later(self.validate(cx, judged));
        }
        later(async move {
            // Named only by ids not learned yet: learn them, so that no topic escapes its rules.
            cx.services.resolve_topic_ids(&unknown).await;
            let judged = self.judge_request(cx, false)?;
            if judged.needs.is_empty() {
                return settle(cx, judged);
            }
            self.validate(cx, judged).await
        })
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        ready(add_refused_answers(cx))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.schema_validation) {
            self.rules = snapshot.schema_validation.clone();
            self.choose();
        }
    }
}
