//! Envelope encryption as two filters (see [`crate::encryption`]).
//!
//! [`EncryptFilter`] (a [`ProducePolicy`]): every record written to a covered topic, whoever
//! writes it, is stored sealed under the topic's current data key. A batch is written again
//! with the client's header kept (producer id, epoch, sequence: idempotent and transactional
//! producers' sequences hold), uncompressed (sealed bytes do not compress). When the KMS
//! cannot give a data key, the partition is refused (REQUEST_TIMED_OUT while the KMS is
//! unavailable, which producers retry; POLICY_VIOLATION otherwise) and nothing is written:
//! never a record unsealed.
//!
//! [`DecryptFilter`]: a principal the rule names reads covered topics opened (data keys of
//! envelopes unwrapped once each through the KMS, retired ones included); one a `refuse` rule
//! does not name gets TOPIC_AUTHORIZATION_FAILED for them; others get the records as stored.
//! An envelope that does not open (KMS lost, damaged record) fails its partition with
//! UNKNOWN_SERVER_ERROR and a warning in the sidecar's log: never a wrong value.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use weir_envelope::{DataKey, DataKeys, KmsError, Opener};
use weir_wire::batch::{refill_batch, BatchHeader, NewRecord};
use weir_wire::compression::Codec;
use weir_wire::record_view::batch_records;

use crate::answers::{refuse_produce_partitions, replace_produce_records, PartitionRefusal, ProduceTopic};
use crate::encryption::{envelopes, CompiledEncryption, EncryptionRule, Others, HEADER};
use crate::fetched::{refill_partition_same_size, Fate, Rewritten};
use crate::filter::{later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{pass_whole_response, PassNote, PassOutcome, RecordsPass, ResponseContext, Services};
use crate::filters::{fetch_may_carry, ProducePolicy};
use crate::quota::ANONYMOUS;
use crate::snapshot::Snapshot;

fn compile(rules: &[EncryptionRule]) -> Vec<CompiledEncryption> {
    rules.iter().map(CompiledEncryption::new).collect()
}

/// The first rule covering `topic`.
fn rule_for<'r>(rules: &'r [CompiledEncryption], topic: &str) -> Option<&'r CompiledEncryption> {
    rules.iter().find(|rule| rule.covers(topic))
}

pub(crate) struct EncryptFilter {
    rules: Arc<[EncryptionRule]>,
    compiled: Vec<CompiledEncryption>,
    keys: Option<Arc<DataKeys>>,
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl EncryptFilter {
    pub(crate) fn new(snapshot: &Snapshot, keys: Option<Arc<DataKeys>>, decompressed_limit: usize) -> Self {
        let rules = snapshot.encryption.clone();
        Self { compiled: compile(&rules), rules, keys, decompressed_limit, scratch: Vec::new() }
    }

    /// The covered topics of the request (by name), with their rules.
    fn covered(&self, cx: &RequestContext<'_>) -> Result<Vec<String>, FilterError> {
        let ids = cx.services.topic_ids();
        let mut topics = Vec::new();
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, _, _| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            if rule_for(&self.compiled, &name).is_some() && !topics.iter().any(|t| t == &*name) {
                topics.push(name.into_owned());
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        Ok(topics)
    }

    async fn encrypt(&mut self, cx: &mut RequestContext<'_>) -> Result<RequestAction, FilterError> {
        let topics = self.covered(cx)?;
        if topics.is_empty() {
            return Ok(RequestAction::Continue);
        }
        // Each topic's data key, a new one from the KMS where needed.
        let mut keys: Vec<(String, Result<Arc<DataKey>, KmsError>)> = Vec::with_capacity(topics.len());
        for topic in topics {
            let rule = rule_for(&self.compiled, &topic).expect("covered");
            let key = match &self.keys {
                Some(keys) => keys.current(&topic, &rule.rotation).await,
                None => Err(KmsError::Unavailable("no kms is configured (it is read at start)".into())),
            };
            keys.push((topic, key));
        }
        let ids = cx.services.topic_ids();
        let (compiled, limit, scratch) = (&self.compiled, self.decompressed_limit, &mut self.scratch);
        let mut replacements: Vec<(ProduceTopic, i32, Bytes)> = Vec::new();
        let mut refused = Vec::new();
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, records| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            let Some(rule) = rule_for(compiled, &name) else { return };
            let key = keys.iter().find(|(t, _)| t == &*name).map(|(_, key)| key).expect("looked up");
            let outcome = match key {
                Ok(key) => seal_records(records, rule, key, limit, scratch)
                    .map(|(sealed, count)| {
                        cx.services.metrics().sealed(&rule.rule, count);
                        sealed
                    })
                    .map_err(|why| (ResponseError::InvalidRecord, why)),
                Err(err) if err.is_retriable() => Err((ResponseError::RequestTimedOut, err.to_string())),
                Err(err) => Err((ResponseError::PolicyViolation, err.to_string())),
            };
            match outcome {
                Ok(sealed) => replacements.push((ProduceTopic::of(topic), partition, sealed)),
                Err((code, why)) => refused.push(PartitionRefusal {
                    topic: ProduceTopic::of(topic),
                    partition,
                    code: code.code(),
                    message: format!("encryption rule `{}`: {why}; nothing was written", rule.rule),
                    record_errors: Vec::new(),
                }),
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        crate::filters::release_scratch(&mut self.scratch);
        replace_produce_records(cx, &replacements)?;
        refuse_produce_partitions(cx, &refused, Vec::new())
    }
}

/// A partition's batches with every value sealed and marked, each batch's header kept; and
/// how many values were sealed.
fn seal_records(
    records: &[u8],
    rule: &CompiledEncryption,
    key: &DataKey,
    limit: usize,
    scratch: &mut Vec<u8>,
) -> Result<(Bytes, u64), String> {
    let mut count = 0;
    let whole: usize = weir_wire::records::batches(records).map(|batch| batch.size).sum();
    if whole != records.len() {
        return Err(format!("{} bytes after the last whole record batch", records.len() - whole));
    }
    let mut out = BytesMut::with_capacity(records.len() + records.len() / 4);
    for batch in weir_wire::records::batches(records) {
        let header = BatchHeader::read(batch.bytes).ok_or("only v2 record batches can be sealed")?;
        if header.is_control() {
            out.extend_from_slice(batch.bytes);
            continue;
        }
        let views: Vec<_> = batch_records(batch.bytes, limit, scratch)
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut sealed = Vec::with_capacity(views.len());
        for (i, view) in views.iter().enumerate() {
            let value =
                view.value.map(|v| rule.seal(key, v)).transpose().map_err(|why| format!("record {i}: {why}"))?;
            sealed.push(value);
        }
        let mut changed = Vec::with_capacity(views.len());
        for (view, value) in views.iter().zip(&sealed) {
            let mut record = NewRecord::from_view(view, header.base_timestamp);
            // A client's own marker would claim a seal the value does not have.
            record.headers.retain(|(k, _)| *k != HEADER.as_bytes());
            if let Some(value) = value {
                count += 1;
                record.value = Some(value);
                record.headers.push((HEADER.as_bytes(), Some(rule.marker())));
            }
            changed.push(record);
        }
        let deltas: Vec<i32> = (0..changed.len() as i32).collect();
        out.extend_from_slice(&refill_batch(&header, &changed, &deltas, Codec::None));
    }
    Ok((out.freeze(), count))
}

impl ProducePolicy for EncryptFilter {
    fn name(&self) -> &'static str {
        "encrypt"
    }

    fn has_rules(&self) -> bool {
        !self.compiled.is_empty()
    }

    fn judge<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        later(self.encrypt(cx))
    }

    fn principal_changed(&mut self, _principal: &str) {}

    fn snapshot_changed(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.encryption) {
            self.rules = snapshot.encryption.clone();
            self.compiled = compile(&self.rules);
        }
    }
}

pub(crate) struct DecryptFilter {
    rules: Arc<[EncryptionRule]>,
    compiled: Arc<[CompiledEncryption]>,
    principal: String,
    keys: Option<Arc<DataKeys>>,
    decompressed_limit: usize,
}

/// What this connection's principal gets of a covered topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Plaintext,
    Refused,
    AsStored,
}

impl DecryptFilter {
    pub(crate) fn new(
        snapshot: &Snapshot,
        connection: &ConnectionInfo,
        keys: Option<Arc<DataKeys>>,
        decompressed_limit: usize,
    ) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.encryption.clone();
        Self { compiled: compile(&rules).into(), rules, principal, keys, decompressed_limit }
    }

    /// Whether any rule changes what this principal reads.
    fn acts(&self) -> bool {
        self.compiled.iter().any(|rule| reading(rule, &self.principal) != Reading::AsStored)
    }

    fn pass(&self) -> DecryptPass {
        DecryptPass {
            compiled: self.compiled.clone(),
            principal: self.principal.clone(),
            keys: self.keys.clone(),
            decompressed_limit: self.decompressed_limit,
            scratch: Vec::new(),
        }
    }
}

/// One Fetch response's covered partitions opened (or refused), as the rules stood when the
/// request went out.
struct DecryptPass {
    compiled: Arc<[CompiledEncryption]>,
    principal: String,
    keys: Option<Arc<DataKeys>>,
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl DecryptPass {
    async fn partition(
        &mut self,
        services: &dyn Services,
        topic: &str,
        partition: i32,
        records: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<PassOutcome, FilterError> {
        let compiled = self.compiled.clone();
        let Some(rule) = rule_for(&compiled, topic) else { return Ok(PassOutcome::Same) };
        match reading(rule, &self.principal) {
            Reading::AsStored => Ok(PassOutcome::Same),
            Reading::Refused => Ok(PassOutcome::Failed(ResponseError::TopicAuthorizationFailed)),
            Reading::Plaintext => match self.open(services, rule, records, out).await {
                Ok(false) => Ok(PassOutcome::Same),
                Ok(true) => Ok(PassOutcome::Rewritten),
                Err(why) => {
                    tracing::warn!(topic, partition, rule = %rule.rule, "sealed records not served: {why}");
                    Ok(PassOutcome::Failed(ResponseError::UnknownServerError))
                }
            },
        }
    }

    /// `records` with every envelope opened, in as many bytes, into `out`; false when none
    /// was sealed (then `out` holds nothing of use).
    async fn open(
        &mut self,
        services: &dyn Services,
        rule: &CompiledEncryption,
        records: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        if records.is_empty() {
            return Ok(false);
        }
        let keys = self.keys.clone().ok_or("no kms is configured (it is read at start)")?;
        let limit = self.decompressed_limit;
        let mut learned = false;
        loop {
            let (mut opened, mut unlearned, mut opener) = (0, false, Opener::new(&keys));
            // The section keeps its size (opened values are smaller), as a streamed response needs.
            let outcome = refill_partition_same_size(records, limit, &mut self.scratch, out, |view| {
                let fate = open_record(&mut opener, view).map_err(|err| {
                    unlearned |= err == OpenError::Envelope(weir_envelope::EnvelopeError::KeyNotLearned);
                    err.to_string()
                })?;
                opened += u64::from(fate != Fate::Unchanged);
                Ok(fate)
            });
            if !unlearned || learned {
                if opened > 0 && outcome.is_ok() {
                    services.metrics().opened(&rule.rule, opened);
                }
                return outcome;
            }
            // Data keys not unwrapped before: each learned once (a KMS call), then again.
            for envelope in unknown_heads(records, &keys, limit, &mut self.scratch)? {
                keys.learn(&envelope).await.map_err(|err| err.to_string())?;
            }
            learned = true;
        }
    }
}

impl RecordsPass for DecryptPass {
    fn covers(&self, topic: &str) -> bool {
        changes(&self.compiled, &self.principal, topic)
    }

    fn partition<'a>(
        &'a mut self,
        services: &'a dyn Services,
        topic: &'a str,
        partition: i32,
        records: &'a [u8],
        out: &'a mut Vec<u8>,
    ) -> Hook<'a, PassOutcome> {
        later(DecryptPass::partition(self, services, topic, partition, records, out))
    }
}

/// Whether what `principal` reads of `topic` is not what is stored.
fn changes(rules: &[CompiledEncryption], principal: &str, topic: &str) -> bool {
    rule_for(rules, topic).is_some_and(|rule| reading(rule, principal) != Reading::AsStored)
}

fn reading(rule: &CompiledEncryption, principal: &str) -> Reading {
    if rule.decrypts_for(principal) {
        Reading::Plaintext
    } else if rule.others == Others::Refuse {
        Reading::Refused
    } else {
        Reading::AsStored
    }
}

/// One envelope for each data key in `records` not unwrapped yet.
fn unknown_heads(records: &[u8], keys: &DataKeys, limit: usize, scratch: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut heads: Vec<Vec<u8>> = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for batch in weir_wire::records::batches(records) {
        let Some(header) = BatchHeader::read(batch.bytes) else { continue };
        if header.is_control() || header.records == 0 {
            continue;
        }
        for view in batch_records(batch.bytes, limit, scratch).map_err(|e| e.to_string())? {
            let view = view.map_err(|e| e.to_string())?;
            let Some(marker) = view.headers().find(|(k, _)| *k == HEADER.as_bytes()).and_then(|(_, v)| v) else {
                continue;
            };
            let Some(value) = view.value else { continue };
            for sealed in envelopes(marker, value)? {
                let head = weir_envelope::Envelope::read(&sealed.envelope).map_err(|e| e.to_string())?.head;
                // Records next to each other mostly share a data key: looked up once.
                if last.as_deref() == Some(head) {
                    continue;
                }
                last = Some(head.to_vec());
                if keys.opener(head).is_none() && !heads.iter().any(|h| h == head) {
                    heads.push(head.to_vec());
                    found.push(sealed.envelope.into_owned());
                }
            }
        }
    }
    Ok(found)
}

/// Why a fetched record did not open.
#[derive(Debug, PartialEq, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Marker(String),
    #[error(transparent)]
    Envelope(#[from] weir_envelope::EnvelopeError),
}

/// A fetched record opened: its value as written, its marker gone. Records without a marker
/// (written before the rule, or not through a sidecar) are served as they are.
fn open_record(opener: &mut Opener<'_>, view: &weir_wire::record_view::RecordView<'_>) -> Result<Fate, OpenError> {
    let Some(marker) = view.headers().find(|(k, _)| *k == HEADER.as_bytes()).and_then(|(_, v)| v) else {
        return Ok(Fate::Unchanged);
    };
    let Some(value) = view.value else { return Ok(Fate::Unchanged) };
    let sealed = envelopes(marker, value).map_err(OpenError::Marker)?;
    let opened = crate::encryption::open(opener, value, &sealed).map_err(OpenError::Envelope)?;
    let mut rewritten = Rewritten::of(view);
    rewritten.headers.retain(|(k, _)| k != HEADER.as_bytes());
    rewritten.value = Some(Some(opened));
    Ok(Fate::Changed(rewritten))
}

impl Filter for DecryptFilter {
    fn name(&self) -> &'static str {
        "decrypt"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Fetch && self.acts()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        ready(fetch_may_carry(cx, |topic| changes(&self.compiled, &self.principal, topic)).map(|covered| {
            if covered {
                cx.pass_records(Box::new(self.pass()));
            }
            RequestAction::Continue
        }))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let Some(PassNote(mut pass)) = cx.take_note::<PassNote>() else { return ready(Ok(())) };
        later(async move { pass_whole_response(cx, pass.as_mut()).await })
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.encryption) {
            self.rules = snapshot.encryption.clone();
            self.compiled = compile(&self.rules).into();
        }
    }
}
