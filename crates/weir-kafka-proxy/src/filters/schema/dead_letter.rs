//! Dead-letter topics (`on_invalid: dead_letter`): a batch holding invalid records is split.
//! Its invalid records are written to the rule's dead-letter topic first (acks=all, one
//! uncompressed batch, the original key, value, timestamp and headers, and headers saying
//! why); only once that topic has them does the rest go on: the valid records as a new batch
//! in the client's codec in place of the client's, or, when none is valid, an answer of the
//! sidecar's own. The client is told its records were written, without offsets (its records
//! are not where its batch said). Nothing is acknowledged that is not stored somewhere: when
//! the dead-letter topic cannot be written, the batch is refused with REQUEST_TIMED_OUT,
//! which producers retry.
//!
//! Only for producers without a sequence: an idempotent or transactional producer's batch is
//! refused whole instead (the judge decides), as taking records out of it would make the
//! broker refuse the producer's next batch as out of order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_wire::batch::{write_batch, BatchHeader, NewRecord};
use weir_wire::compression::Codec;
use weir_wire::record_view::batch_records;

use crate::answers::{replace_produce_records, PartitionRefusal, ProduceTopic};
use crate::filter::{FilterError, RequestContext};
use crate::schema_rules::SchemaRule;
use crate::side::{error_name, ClusterAccess, TopicWriter};

/// How long the dead-letter topic's broker may take to answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The Produce version the sidecar writes dead letters with (topics by name, flexible).
const PRODUCE_VERSION: i16 = 9;

/// A partition whose invalid records go to a dead-letter topic.
pub(super) struct DeadLetterPlan {
    pub(super) topic: ProduceTopic,
    pub(super) topic_name: String,
    pub(super) partition: i32,
    pub(super) rule: SchemaRule,
    /// The partition's records, as the request holds them (one batch).
    pub(super) records: Bytes,
    /// The invalid records: index in the batch, why.
    pub(super) invalid: Vec<(usize, String)>,
}

/// What diverting did to a request's partitions.
pub(super) struct Diverted {
    /// Partitions the sidecar answers itself: refused (the dead-letter topic could not be
    /// written), or every record went to the dead-letter topic (code 0).
    pub(super) answered: Vec<PartitionRefusal>,
    /// Partitions whose records are now the batch of their valid records.
    pub(super) rewritten: Vec<(ProduceTopic, i32)>,
}

/// A connection's writers to dead-letter topics, made when first needed.
pub(super) struct DeadLetters {
    cluster: Arc<ClusterAccess>,
    writers: HashMap<String, TopicWriter>,
}

/// A batch split in two.
struct Split {
    dead: Bytes,
    dead_count: usize,
    /// The valid records' batch; None when there are none.
    kept: Option<Bytes>,
}

impl DeadLetters {
    pub(super) fn new(cluster: Arc<ClusterAccess>) -> Self {
        Self { cluster, writers: HashMap::new() }
    }

    /// Writes each plan's invalid records to its dead-letter topic, and puts the valid ones
    /// in the request in place of the partition's batch.
    pub(super) async fn divert(
        &mut self,
        cx: &mut RequestContext<'_>,
        plans: Vec<DeadLetterPlan>,
        principal: &str,
        limit: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Diverted, FilterError> {
        let client_id = cx.header.client_id_str().to_owned();
        let mut diverted = Diverted { answered: Vec::new(), rewritten: Vec::new() };
        let mut replacements: Vec<(ProduceTopic, i32, Bytes)> = Vec::new();
        for plan in plans {
            let rule = &plan.rule.name;
            let answer = |code: ResponseError, message: String| PartitionRefusal {
                topic: plan.topic.clone(),
                partition: plan.partition,
                code: code.code(),
                message: format!("{message} (rule `{rule}`)"),
                record_errors: Vec::new(),
            };
            let split = match split(&plan, principal, &client_id, limit, scratch) {
                Ok(split) => split,
                Err(why) => {
                    diverted.answered.push(answer(ResponseError::InvalidRecord, why));
                    continue;
                }
            };
            let dead_letter_topic = plan.rule.dead_letter_topic.clone().unwrap_or_default();
            if let Err(why) = self.write(&dead_letter_topic, plan.partition, split.dead).await {
                tracing::warn!(rule, topic = dead_letter_topic, why, "cannot write to the dead-letter topic");
                let why = format!("the dead-letter topic `{dead_letter_topic}` could not be written ({why}); nothing of the batch was written");
                diverted.answered.push(answer(ResponseError::RequestTimedOut, why));
                continue;
            }
            cx.services.metrics().schema_dead_lettered(rule, split.dead_count as u64);
            tracing::debug!(
                rule,
                partition = plan.partition,
                records = split.dead_count,
                "invalid records written to the dead-letter topic"
            );
            match split.kept {
                Some(kept) => replacements.push((plan.topic, plan.partition, kept)),
                None => diverted
                    .answered
                    .push(PartitionRefusal { code: 0, ..answer(ResponseError::InvalidRecord, String::new()) }),
            }
        }
        if !replacements.is_empty() {
            replace_produce_records(cx, &replacements)?;
            diverted.rewritten = replacements.into_iter().map(|(topic, partition, _)| (topic, partition)).collect();
        }
        Ok(diverted)
    }

    /// Writes `batch` to `topic`, to the partition of the same number (modulo its partitions),
    /// acknowledged by all in-sync replicas.
    async fn write(&mut self, topic: &str, partition: i32, batch: Bytes) -> Result<(), String> {
        let cluster = &self.cluster;
        let writer = self.writers.entry(topic.to_owned()).or_insert_with(|| cluster.writer(topic));
        let leaders = writer.leaders().await?;
        let target = partition.rem_euclid(leaders.leaders.len() as i32);
        let leader = leaders.leaders[target as usize];
        if leader < 0 {
            writer.forget_leaders();
            return Err(format!("partition {target} has no leader now"));
        }
        let data = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(target).with_records(Some(batch))]);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(WRITE_TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![data]);
        let answer = writer.produce(leader, PRODUCE_VERSION, &request, WRITE_TIMEOUT).await?;
        let code = answer.responses.first().and_then(|t| t.partition_responses.first()).map(|p| p.error_code);
        match code {
            Some(0) => Ok(()),
            Some(code) => {
                writer.forget_leaders();
                Err(error_name(code))
            }
            None => Err("the broker's answer names no partition".into()),
        }
    }
}

/// The plan's batch split: its invalid records, with headers saying why, as a batch of their
/// own, and its valid ones as a batch in the client's codec.
fn split(
    plan: &DeadLetterPlan,
    principal: &str,
    client_id: &str,
    limit: usize,
    scratch: &mut Vec<u8>,
) -> Result<Split, String> {
    let header = BatchHeader::read(&plan.records).ok_or("not a v2 record batch")?;
    let records = batch_records(&plan.records, limit, scratch).map_err(|e| e.to_string())?;
    let partition = plan.partition.to_string();
    let context: [(&[u8], &str); 5] = [
        (b"weir.dlq.rule", &plan.rule.name),
        (b"weir.dlq.topic", &plan.topic_name),
        (b"weir.dlq.partition", &partition),
        (b"weir.dlq.principal", principal),
        (b"weir.dlq.client.id", client_id),
    ];
    let (mut dead, mut kept) = (Vec::new(), Vec::new());
    for (index, record) in records.enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        let mut new = NewRecord::from_view(&record, header.base_timestamp);
        match plan.invalid.iter().find(|(i, _)| *i == index) {
            Some((_, why)) => {
                new.headers.push((b"weir.dlq.reason", Some(why.as_bytes())));
                new.headers.extend(context.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
                dead.push(new);
            }
            None => kept.push(new),
        }
    }
    let dead_count = dead.len();
    let codec = header.codec().unwrap_or(Codec::None);
    let kept = (!kept.is_empty()).then(|| write_batch(&kept, codec, Some(&header)).freeze());
    Ok(Split { dead: write_batch(&dead, Codec::None, None).freeze(), dead_count, kept })
}
