//! Schema validation (see [`crate::schema_rules`]): every record of a produce request written
//! to a covered topic has its key and value judged by the rule's format (`weir_schema`), its
//! batch read in place (decompressed into a scratch buffer when compressed) and forwarded as
//! the very bytes that came when every record passes. A batch holding a record that does not
//! pass is refused as a broker refuses an invalid record: INVALID_RECORD, and from Produce v8
//! the partition's message and `record_errors` naming each such record; or, under
//! `on_invalid: dead_letter`, its invalid records go to the dead-letter topic and the others
//! on to their topic ([`dead_letter`]). The rest of the request is written.
//!
//! Schemas come from the registry, asked once per id and cached (`weir_schema::registry`);
//! a request naming a schema not cached waits for it (at most the registry's timeout), the
//! responses of earlier requests keeping their order. When the registry cannot say, the rule
//! decides: refuse with REQUEST_TIMED_OUT, which producers retry (fail closed, the default),
//! or write the records unchecked (fail open).

mod dead_letter;

use std::cell::RefCell;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use weir_schema::judge::{judge, Compiled, SchemaRegistry, Schemas, Verdict};
use weir_schema::registry::{Known, LookupError};
use weir_wire::batch::BatchHeader;
use weir_wire::record_view::batch_records;

use crate::answers::{refuse_produce_partitions, PartitionRefusal, ProduceTopic};
use crate::filter::{later, ready, ConnectionInfo, FilterError, Hook, RequestAction, RequestContext};
use crate::filters::ProducePolicy;
use crate::quota::ANONYMOUS;
use crate::safeguard::MAX_RECORD_ERRORS;
use crate::schema_rules::{CoveredTopics, OnInvalid, SchemaRule, WhenUnavailable};
use crate::side::ClusterAccess;
use crate::snapshot::Snapshot;
use dead_letter::{DeadLetterPlan, DeadLetters};

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
    dead_letters: DeadLetters,
}

/// The registry as the judge sees it: none configured is a registry that cannot say. The
/// last schema asked for is remembered, so that a batch of records of one schema takes the
/// cache's lock once.
struct Lookups<'a> {
    registry: Option<&'a SchemaRegistry>,
    last: RefCell<Option<(u32, Arc<Known<Compiled>>)>>,
}

impl Schemas for Lookups<'_> {
    fn known(&self, id: u32) -> Option<Result<Arc<Known<Compiled>>, LookupError>> {
        if let Some((last, known)) = &*self.last.borrow() {
            if *last == id {
                return Some(Ok(known.clone()));
            }
        }
        let Some(registry) = self.registry else {
            let why = "no schema_registry is configured (it is read at start: restart the sidecar to add one)";
            return Some(Err(LookupError::Unavailable { id, why: why.into() }));
        };
        let outcome = registry.known(id);
        if let Some(Ok(known)) = &outcome {
            *self.last.borrow_mut() = Some((id, known.clone()));
        }
        outcome
    }
}

/// What judging a request found.
#[derive(Default)]
struct Judged {
    refused: Vec<PartitionRefusal>,
    /// Partitions whose invalid records go to a dead-letter topic.
    dead_letter: Vec<DeadLetterPlan>,
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
    Refuse {
        code: i16,
        message: String,
        record_errors: Vec<(i32, String)>,
    },
    /// Under a dead-letter rule: these records (index in the batch, why) are invalid, the
    /// rest valid.
    DeadLetter {
        invalid: Vec<(usize, String)>,
    },
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
        cluster: Arc<ClusterAccess>,
        decompressed_limit: usize,
    ) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.schema_validation.clone();
        let mut filter = Self {
            rules,
            mine: Vec::new(),
            principal,
            registry,
            decompressed_limit,
            scratch: Vec::new(),
            dead_letters: DeadLetters::new(cluster),
        };
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
        let schemas = Lookups { registry: self.registry.as_deref(), last: RefCell::new(None) };
        let frame = cx.frame();
        weir_wire::produce::scan_produce(frame, cx.header, |topic, partition, records| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            let name = &*name;
            for rule in mine.iter().filter(|rule| rule.covers(name)).map(|covered| &covered.rule) {
                let mut tally = Tally::default();
                let mut judge = Judge { rule, topic: name, limit, schemas: &schemas, settle, needs: &mut judged.needs };
                let verdict = judge.partition(records, scratch, &mut tally);
                judged.verdicts.extend(tally.0.into_iter().map(|(verdict, n)| (rule.name.clone(), verdict, n)));
                let topic = ProduceTopic::of(topic);
                match verdict {
                    None | Some(PartitionVerdict::Pass) => continue,
                    Some(PartitionVerdict::DeadLetter { invalid }) => {
                        judged.dead_letter.push(DeadLetterPlan {
                            topic,
                            topic_name: name.to_owned(),
                            partition,
                            rule: rule.clone(),
                            records: frame.slice_ref(records),
                            invalid,
                        });
                    }
                    Some(PartitionVerdict::Refuse { code, message, record_errors }) => {
                        judged.refused_records.push((rule.name.clone(), weir_wire::records::count_records(records)));
                        tracing::debug!(
                            partition,
                            rule = rule.name,
                            reason = message,
                            "produce refused by schema validation"
                        );
                        judged.refused.push(PartitionRefusal { topic, partition, code, message, record_errors });
                    }
                }
                break;
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        crate::filters::release_scratch(&mut self.scratch);
        Ok(judged)
    }

    /// Asks the registry what `judged` needs, and judges again, until every record is
    /// judged (the last round counts what is still not cached as unchecked); then acts.
    async fn validate(
        &mut self,
        cx: &mut RequestContext<'_>,
        mut judged: Judged,
    ) -> Result<RequestAction, FilterError> {
        for round in 2..=MAX_ROUNDS {
            if judged.needs.is_empty() {
                break;
            }
            if let Some(registry) = self.registry.clone() {
                // Outcomes are cached, failures included: the next round judges with them.
                for (id, subject) in std::mem::take(&mut judged.needs) {
                    if let Ok(known) = registry.schema(id).await {
                        let _ = registry.is_version_of(&known, &subject).await;
                    }
                }
            }
            judged = self.judge_request(cx, round == MAX_ROUNDS)?;
        }
        let mut rewritten = Vec::new();
        if !judged.dead_letter.is_empty() {
            let plans = std::mem::take(&mut judged.dead_letter);
            let (principal, limit) = (self.principal.clone(), self.decompressed_limit);
            let diverted = self.dead_letters.divert(cx, plans, &principal, limit, &mut self.scratch).await?;
            judged.refused.extend(diverted.answered);
            rewritten = diverted.rewritten;
        }
        settle(cx, judged, rewritten)
    }
}

/// Acts on a judgement of every record: counts it, and refuses what it refused (and notes
/// which partitions' records were rewritten).
fn settle(
    cx: &mut RequestContext<'_>,
    judged: Judged,
    rewritten: Vec<(ProduceTopic, i32)>,
) -> Result<RequestAction, FilterError> {
    let metrics = cx.services.metrics();
    for (rule, verdict, n) in &judged.verdicts {
        metrics.schema_records(rule, verdict, *n);
    }
    for (rule, n) in &judged.refused_records {
        metrics.schema_refused(rule, *n);
    }
    refuse_produce_partitions(cx, &judged.refused, rewritten)
}

/// Judges the partitions of one rule.
struct Judge<'r, 's> {
    rule: &'r SchemaRule,
    topic: &'r str,
    limit: usize,
    schemas: &'r Lookups<'s>,
    /// Whether a schema still not cached counts as one the registry could not give.
    settle: bool,
    needs: &'r mut Vec<(u32, String)>,
}

impl Judge<'_, '_> {
    fn refuse(&self, code: ResponseError, message: String) -> Option<PartitionVerdict> {
        let message = format!("{message} (rule `{}`)", self.rule.name);
        Some(PartitionVerdict::Refuse { code: code.code(), message, record_errors: Vec::new() })
    }

    /// One partition's records, each record's verdict tallied: None when it needs schemas not
    /// cached yet (pushed onto `needs`), unless `settle`.
    fn partition(&mut self, records: &[u8], scratch: &mut Vec<u8>, tally: &mut Tally) -> Option<PartitionVerdict> {
        let rule = self.rule;
        let subjects = [format!("{}-key", self.topic), format!("{}-value", self.topic)];
        let parts = [("key", rule.key, &subjects[0]), ("value", rule.value, &subjects[1])];
        let dead_letter = rule.on_invalid == OnInvalid::DeadLetter;
        let (mut invalid, mut unavailable, mut pending, mut index_base) = (Vec::new(), None, false, 0usize);
        let mut batches = 0usize;
        let mut sequenced = false;
        for batch in weir_wire::records::batches(records) {
            batches += 1;
            sequenced |= BatchHeader::read(batch.bytes).is_some_and(|h| h.is_sequenced());
            let batch_records = match batch_records(batch.bytes, self.limit, scratch) {
                Ok(records) => records,
                Err(err) => return self.refuse(ResponseError::InvalidRecord, err.to_string()),
            };
            let mut count = 0usize;
            for (index, record) in batch_records.enumerate() {
                count += 1;
                let record = match record {
                    Ok(record) => record,
                    Err(err) => return self.refuse(ResponseError::InvalidRecord, err.to_string()),
                };
                let mut verdict = "valid";
                for (part, format, subject) in parts {
                    let (Some(format), Some(payload)) = (format, if part == "key" { record.key } else { record.value })
                    else {
                        // No rule for it, or null: a keyless record, a tombstone.
                        continue;
                    };
                    match judge(format, payload, subject, self.schemas) {
                        Verdict::Valid => {}
                        Verdict::Refused(fault, why) => {
                            let index = index_base + index;
                            invalid.push((index, format!("{part} of record {index}: {why} (rule `{}`)", rule.name)));
                            verdict = fault.as_str();
                            break;
                        }
                        Verdict::Needs(id) if !self.settle => {
                            pending = true;
                            if !self.needs.iter().any(|(n, s)| *n == id && s == subject) {
                                self.needs.push((id, subject.clone()));
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
        let refuse_unavailable = unavailable.is_some() && rule.on_registry_unavailable == WhenUnavailable::Refuse;
        if !invalid.is_empty() {
            // A batch is written whole or not at all; a dead-letter rule takes its invalid
            // records out, unless that breaks a producer's sequence or nothing could be judged.
            if dead_letter && batches == 1 && !sequenced && !refuse_unavailable {
                return Some(PartitionVerdict::DeadLetter { invalid });
            }
            let message = match invalid.len() {
                1 => invalid[0].1.clone(),
                n => format!("{}; {} more record(s) of the batch are invalid", invalid[0].1, n - 1),
            };
            invalid.truncate(MAX_RECORD_ERRORS);
            let record_errors = invalid.into_iter().map(|(index, why)| (index as i32, why)).collect();
            return Some(PartitionVerdict::Refuse {
                code: ResponseError::InvalidRecord.code(),
                message,
                record_errors,
            });
        }
        if refuse_unavailable {
            let why = unavailable.unwrap_or_default();
            return self.refuse(ResponseError::RequestTimedOut, format!("{why}; the records were not written"));
        }
        Some(PartitionVerdict::Pass)
    }
}

impl ProducePolicy for SchemaFilter {
    fn name(&self) -> &'static str {
        "schema"
    }

    fn has_rules(&self) -> bool {
        !self.mine.is_empty()
    }

    fn judge<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        // The common case, without a wait: every schema the records name is cached.
        let judged = match self.judge_request(cx, false) {
            Ok(judged) => judged,
            Err(err) => return ready(Err(err)),
        };
        if judged.needs.is_empty() && judged.dead_letter.is_empty() {
            return ready(settle(cx, judged, Vec::new()));
        }
        later(self.validate(cx, judged))
    }

    fn principal_changed(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn snapshot_changed(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.schema_validation) {
            self.rules = snapshot.schema_validation.clone();
            self.choose();
        }
    }
}
