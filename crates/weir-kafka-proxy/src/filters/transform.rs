//! Record transformation on produce (see [`crate::transform`]): every batch written to a
//! covered topic is read (decompressed when compressed), its records' headers changed as the
//! rules say, and written again in its place with the client's header kept whole: the same
//! records in the same order with the same keys, values and timestamps, the same producer id,
//! epoch and base sequence (an idempotent or transactional producer's sequence holds), the
//! same codec. A batch whose records cannot be read is refused (INVALID_RECORD): a record the
//! sidecar cannot read would escape the rules. Topics no rule covers go on as the same bytes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use weir_wire::batch::{rewrite_batch, BatchHeader, NewRecord};
use weir_wire::record_view::batch_records;

use crate::answers::{refuse_produce_partitions, replace_produce_records, PartitionRefusal, ProduceTopic};
use crate::filter::{ready, ConnectionInfo, FilterError, Hook, RequestAction, RequestContext};
use crate::filters::ProducePolicy;
use crate::quota::ANONYMOUS;
use crate::snapshot::Snapshot;
use crate::transform::{CompiledTransform, Lineage, TransformRule};

pub(crate) struct TransformFilter {
    rules: Arc<[TransformRule]>,
    /// The produce transforms of the rules whose principals cover this connection's.
    mine: Vec<CompiledTransform>,
    principal: String,
    /// The most a compressed batch may grow to when read (`limits.max_decompressed_batch_bytes`).
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl TransformFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo, decompressed_limit: usize) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.transforms.clone();
        let mut filter = Self { rules, mine: Vec::new(), principal, decompressed_limit, scratch: Vec::new() };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine =
            self.rules.iter().filter(|r| r.covers_principal(principal)).filter_map(CompiledTransform::new).collect();
    }

    fn transform(&mut self, cx: &mut RequestContext<'_>) -> Result<RequestAction, FilterError> {
        let ids = cx.services.topic_ids();
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let (client_id, principal) = (cx.header.client_id_str(), self.principal.as_str());
        let (mine, limit, scratch) = (&self.mine, self.decompressed_limit, &mut self.scratch);
        let mut replacements: Vec<(ProduceTopic, i32, Bytes)> = Vec::new();
        let mut refused = Vec::new();
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, records| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            let name = &*name;
            let rules: Vec<&CompiledTransform> = mine.iter().filter(|rule| rule.covers(name)).collect();
            if rules.is_empty() {
                return;
            }
            let lineage = Lineage { principal, client_id, topic: name, time_ms };
            match rewrite(records, &rules, &lineage, limit, scratch) {
                Ok(rewritten) => replacements.push((ProduceTopic::of(topic), partition, rewritten)),
                Err(why) => refused.push(PartitionRefusal {
                    topic: ProduceTopic::of(topic),
                    partition,
                    code: ResponseError::InvalidRecord.code(),
                    message: format!("{why} (rule `{}`)", rules[0].rule),
                    record_errors: Vec::new(),
                }),
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        crate::filters::release_scratch(&mut self.scratch);
        replace_produce_records(cx, &replacements)?;
        // Rewritten batches keep their records' number: the broker's offsets stay true.
        refuse_produce_partitions(cx, &refused, Vec::new())
    }
}

/// A partition's batches with their records' headers changed by `rules`.
fn rewrite(
    records: &[u8],
    rules: &[&CompiledTransform],
    lineage: &Lineage<'_>,
    limit: usize,
    scratch: &mut Vec<u8>,
) -> Result<Bytes, String> {
    let added: Vec<(Vec<u8>, Vec<u8>)> = rules.iter().flat_map(|rule| rule.added(lineage)).collect();
    let mut out = BytesMut::with_capacity(records.len() + records.len() / 8);
    let whole: usize = weir_wire::records::batches(records).map(|batch| batch.size).sum();
    if whole != records.len() {
        // The broker would refuse them; a rewrite must not drop them and write the rest.
        return Err(format!("{} bytes after the last whole record batch", records.len() - whole));
    }
    for batch in weir_wire::records::batches(records) {
        let header = BatchHeader::read(batch.bytes).ok_or("only v2 record batches can be transformed")?;
        if header.is_control() {
            out.extend_from_slice(batch.bytes);
            continue;
        }
        let mut changed = Vec::new();
        for record in batch_records(batch.bytes, limit, scratch).map_err(|e| e.to_string())? {
            let record = record.map_err(|e| e.to_string())?;
            let mut new = NewRecord::from_view(&record, header.base_timestamp);
            new.headers.retain(|(key, _)| !rules.iter().any(|rule| rule.drops(key)));
            new.headers.extend(added.iter().map(|(key, value)| (key.as_slice(), Some(value.as_slice()))));
            changed.push(new);
        }
        out.extend_from_slice(&rewrite_batch(&header, &changed));
    }
    Ok(out.freeze())
}

impl ProducePolicy for TransformFilter {
    fn name(&self) -> &'static str {
        "transform"
    }

    fn has_rules(&self) -> bool {
        !self.mine.is_empty()
    }

    fn judge<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        ready(self.transform(cx))
    }

    fn principal_changed(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn snapshot_changed(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.transforms) {
            self.rules = snapshot.transforms.clone();
            self.choose();
        }
    }
}
