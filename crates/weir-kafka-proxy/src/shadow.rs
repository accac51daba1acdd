//! Traffic shadowing: the rules of the sidecar's `shadows:` config, and the writers that copy
//! what clients produced to a topic onto a shadow topic, on the same or another cluster.
//!
//! A copy never slows the write it copies. The shadow filter ([`crate::filters::shadow`])
//! hands each batch the broker accepted to the rule's [`ShadowWriter`] and returns at once:
//! the writer queues it (bounded in bytes; past the bound the copy is dropped and counted)
//! and a task of its own writes the queue to the shadow topic's leaders over connections of
//! the sidecar's own. Copies are plain batches: the client's producer id, sequence and
//! transaction flag mean nothing on the shadow topic (see [`weir_wire::records::plain_copy`]);
//! keys, values, headers and timestamps are the client's bytes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_core::config::{invalid, ConfigError};

use crate::config::split_host_port;
use crate::metrics::{ShadowFamilies, ShadowMetrics};
use crate::side::{error_name, is_retriable, ClusterAccess, TopicWriter};
use crate::upstream::Connector;

/// One rule of `shadows:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRule {
    /// Its name, in metrics and logs.
    pub name: String,
    /// The topic whose writes are copied.
    pub topic: String,
    /// The shadow topic the copies go to (it must exist). A record produced to partition `p`
    /// goes to partition `p` modulo the shadow topic's partition count.
    pub to: String,
    /// Whose writes (principals as authorization names them; absent or `*`: everyone's).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Another cluster's bootstrap servers (reached in plaintext, without SASL); absent: the
    /// sidecar's own cluster, reached as the sidecar reaches it (TLS and default SASL
    /// credentials included).
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Record bytes that may wait for the shadow; a copy that does not fit is dropped.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
}

fn default_queue_bytes() -> usize {
    16 << 20
}

const MIN_QUEUE_BYTES: usize = 64 << 10;
const MAX_QUEUE_BYTES: usize = 1 << 30;

impl ShadowRule {
    /// Checks what serde cannot; `field` names the rule in errors (`shadows[0]`).
    pub fn validate(&self, origin: &Path, field: &str) -> Result<(), ConfigError> {
        for (name, value) in [("name", &self.name), ("topic", &self.topic), ("to", &self.to)] {
            if value.trim().is_empty() {
                return Err(invalid(origin, &format!("{field}.{name}"), "must not be empty"));
            }
        }
        if self.bootstrap.is_empty() && self.to == self.topic {
            let why = format!("`{}` is the shadowed topic itself: every record would be written twice", self.to);
            return Err(invalid(origin, &format!("{field}.to"), why));
        }
        for (i, server) in self.bootstrap.iter().enumerate() {
            if split_host_port(server).is_none() {
                return Err(invalid(
                    origin,
                    &format!("{field}.bootstrap[{i}]"),
                    format!("`{server}` is not host:port"),
                ));
            }
        }
        if !(MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES).contains(&self.queue_bytes) {
            let why = format!("must be {MIN_QUEUE_BYTES} to {MAX_QUEUE_BYTES}, not {}", self.queue_bytes);
            return Err(invalid(origin, &format!("{field}.queue_bytes"), why));
        }
        Ok(())
    }
}

/// Checks a list of rules: each valid, no two with one name.
pub fn validate_rules(rules: &[ShadowRule], origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("shadows[{i}]"))?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "shadows", origin)?;
    Ok(())
}

/// The writers of the rules in use, one per rule, shared by every connection whose writes the
/// rule copies. A writer lives as long as some connection's filter holds it; a rule that
/// changed gets a new writer (the old one writes what it queued, then ends).
pub struct ShadowWriters {
    own: Arc<ClusterAccess>,
    families: ShadowFamilies,
    shutdown: CancellationToken,
    writers: Mutex<HashMap<String, Weak<ShadowWriter>>>,
}

impl ShadowWriters {
    /// `own` reaches the sidecar's own cluster.
    pub fn new(own: Arc<ClusterAccess>, families: ShadowFamilies, shutdown: CancellationToken) -> Self {
        Self { own, families, shutdown, writers: Mutex::default() }
    }

    /// The writers of `rules`, started where none runs. Needs a Tokio runtime.
    pub(crate) fn for_rules(&self, rules: &[ShadowRule]) -> Vec<Arc<ShadowWriter>> {
        if rules.is_empty() {
            return Vec::new();
        }
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        writers.retain(|_, writer| writer.strong_count() > 0);
        rules
            .iter()
            .map(|rule| {
                let running = writers.get(&rule.name).and_then(Weak::upgrade).filter(|w| w.rule == *rule);
                running.unwrap_or_else(|| {
                    let writer = self.start(rule.clone());
                    writers.insert(rule.name.clone(), Arc::downgrade(&writer));
                    writer
                })
            })
            .collect()
    }

    fn start(&self, rule: ShadowRule) -> Arc<ShadowWriter> {
        let access = if rule.bootstrap.is_empty() {
            (*self.own).clone()
        } else {
            let (_, plain) = tokio::sync::watch::channel(Arc::default());
            let connector = Connector::new(BTreeMap::new(), self.own.connector.timeout(), plain, None, &[]);
            ClusterAccess::new(connector, rule.bootstrap.clone())
        };
        let (queue, copies) = mpsc::unbounded_channel();
        let metrics = self.families.rule(&rule.name);
        let queued = Arc::new(AtomicUsize::new(0));
        let task = WriterTask {
            name: rule.name.clone(),
            writer: access.writer(&rule.to),
            copies,
            queued: queued.clone(),
            metrics: metrics.clone(),
            shutdown: self.shutdown.clone(),
            warned: None,
            refusals: HashSet::new(),
        };
        tokio::spawn(task.run());
        tracing::info!(rule = %rule.name, from = %rule.topic, to = %rule.to, "shadowing writes");
        Arc::new(ShadowWriter { rule, queue, queued, metrics })
    }
}

/// The client side of one rule's writer: takes copies and never waits.
pub(crate) struct ShadowWriter {
    pub(crate) rule: ShadowRule,
    queue: mpsc::UnboundedSender<Copy>,
    /// Record bytes queued and not yet taken by the task: the queue's bound.
    queued: Arc<AtomicUsize>,
    metrics: ShadowMetrics,
}

/// Records of one partition, as the client produced them.
struct Copy {
    partition: i32,
    records: Bytes,
    count: u64,
}

impl ShadowWriter {
    /// Queues a copy of `records` (written to `partition` of the shadowed topic), or drops it
    /// (counted) when the queue is full.
    pub(crate) fn offer(&self, partition: i32, records: Bytes) {
        let count = weir_wire::records::count_records(&records);
        let size = records.len();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > self.rule.queue_bytes {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.metrics.queue_full.inc_by(count);
            return;
        }
        self.metrics.queued_bytes.inc_by(size as i64);
        if self.queue.send(Copy { partition, records, count }).is_err() {
            // The task ended: the sidecar stops.
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.metrics.queued_bytes.dec_by(size as i64);
            self.metrics.stopped.inc_by(count);
        }
    }
}

/// What one produce request of a writer carries at most (the rest waits for the next).
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Attempts per copy; between them the shadow topic's leaders are looked up again.
const ATTEMPTS: u32 = 4;
const BACKOFF: Duration = Duration::from_millis(200);
/// How long the shadow's broker may take to replicate a write (acks=all).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Produce v8: per-record errors, and served by every broker since Kafka 2.4.
const PRODUCE_VERSION: i16 = 8;
/// A writer that keeps failing says so at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One rule's writing task.
struct WriterTask {
    name: String,
    writer: TopicWriter,
    copies: mpsc::UnboundedReceiver<Copy>,
    queued: Arc<AtomicUsize>,
    metrics: ShadowMetrics,
    shutdown: CancellationToken,
    warned: Option<Instant>,
    /// Error codes the shadow's brokers refused copies with, each logged once.
    refusals: HashSet<i16>,
}

impl WriterTask {
    async fn run(mut self) {
        loop {
            let first = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                copy = self.copies.recv() => match copy {
                    Some(copy) => copy,
                    // Every handle is gone (the rule changed or no connection uses it) and the
                    // queue is written.
                    None => return,
                },
            };
            let mut size = first.records.len();
            let mut batch = vec![first];
            while size < MAX_REQUEST_BYTES {
                let Ok(copy) = self.copies.try_recv() else { break };
                size += copy.records.len();
                batch.push(copy);
            }
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.metrics.queued_bytes.dec_by(size as i64);
            let records: u64 = batch.iter().map(|c| c.count).sum();
            let shutdown = self.shutdown.clone();
            tokio::select! {
                biased;
                // Stopping: what was being written may or may not have been.
                _ = shutdown.cancelled() => {
                    self.metrics.stopped.inc_by(records);
                    break;
                }
                _ = self.write(batch) => {}
            }
        }
        while let Ok(copy) = self.copies.try_recv() {
            self.metrics.stopped.inc_by(copy.count);
            self.metrics.queued_bytes.dec_by(copy.records.len() as i64);
        }
    }

    /// Writes `copies`, retrying what failed on the way; counts each record written or
    /// dropped.
    async fn write(&mut self, copies: Vec<Copy>) {
        let mut pending: Vec<(i32, Bytes, u64)> = copies
            .into_iter()
            .filter_map(|copy| {
                let (records, count) = weir_wire::records::plain_copy(&copy.records);
                (count > 0).then_some((copy.partition, records, count))
            })
            .collect();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF * attempt).await;
            }
            pending = match self.write_once(pending, &mut last).await {
                Ok(retry) if retry.is_empty() => return,
                Ok(retry) | Err(retry) => retry,
            };
            // Leadership may have moved: look again before the next attempt.
            self.writer.forget_leaders();
        }
        let lost: u64 = pending.iter().map(|(_, _, count)| count).sum();
        self.metrics.unreachable.inc_by(lost);
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            tracing::warn!(rule = %self.name, shadow = %self.writer.topic(), records = lost, reason = %last,
                "shadow copies dropped: the shadow topic cannot be written");
        }
    }

    /// One attempt: each leader gets one produce request per round. Returns what should be
    /// tried again (no leader, unreachable, or a retriable error); Err when the leaders are
    /// not known.
    async fn write_once(
        &mut self,
        pending: Vec<(i32, Bytes, u64)>,
        last: &mut String,
    ) -> Result<Vec<(i32, Bytes, u64)>, Vec<(i32, Bytes, u64)>> {
        let leaders = match self.writer.leaders().await {
            Ok(known) => known.leaders.clone(),
            Err(why) => {
                *last = why;
                return Err(pending);
            }
        };
        let mut by_leader: BTreeMap<i32, BTreeMap<i32, VecDeque<(Bytes, u64)>>> = BTreeMap::new();
        let mut retry = Vec::new();
        for (partition, records, count) in pending {
            let to = partition.rem_euclid(leaders.len() as i32);
            match leaders[to as usize] {
                -1 => retry.push((partition, records, count)),
                leader => by_leader.entry(leader).or_default().entry(to).or_default().push_back((records, count)),
            }
        }
        if !retry.is_empty() {
            *last = format!("a partition of `{}` has no leader", self.writer.topic());
        }
        let rest = |to: i32, copies: VecDeque<(Bytes, u64)>| copies.into_iter().map(move |(r, n)| (to, r, n));
        for (leader, mut parts) in by_leader {
            // A produce request (v3+) carries one batch per partition: a partition's batches
            // go in rounds, in order.
            while !parts.is_empty() {
                let round: Vec<(i32, Bytes, u64)> =
                    parts.iter_mut().filter_map(|(to, q)| q.pop_front().map(|(r, n)| (*to, r, n))).collect();
                parts.retain(|_, q| !q.is_empty());
                match self.produce(leader, &round).await {
                    Ok(failed) => {
                        for (to, code) in failed {
                            *last = format!("partition {to}: {}", error_name(code));
                            retry.extend(round.iter().filter(|(t, _, _)| *t == to).cloned());
                            retry.extend(parts.remove(&to).into_iter().flat_map(|q| rest(to, q)));
                        }
                    }
                    Err(why) => {
                        *last = why;
                        retry.extend(round);
                        retry.extend(std::mem::take(&mut parts).into_iter().flat_map(|(to, q)| rest(to, q)));
                    }
                }
            }
        }
        Ok(retry)
    }

    /// Writes one batch to each of one leader's partitions; returns the partitions that failed
    /// with a retriable error.
    async fn produce(&mut self, leader: i32, round: &[(i32, Bytes, u64)]) -> Result<Vec<(i32, i16)>, String> {
        let partition_data = round
            .iter()
            .map(|(to, records, _)| PartitionProduceData::default().with_index(*to).with_records(Some(records.clone())))
            .collect();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.writer.topic().to_owned())))
                .with_partition_data(partition_data)]);
        let answer = self.writer.produce(leader, PRODUCE_VERSION, &request, PRODUCE_TIMEOUT).await?;
        let mut failed = Vec::new();
        for partition in answer.responses.iter().flat_map(|topic| &topic.partition_responses) {
            let count: u64 = round.iter().filter(|(to, _, _)| *to == partition.index).map(|(_, _, n)| n).sum();
            match partition.error_code {
                0 => {
                    self.metrics.written.inc_by(count);
                }
                code if is_retriable(code) => failed.push((partition.index, code)),
                code => {
                    self.metrics.refused.inc_by(count);
                    if self.refusals.insert(code) {
                        let detail = partition.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
                        tracing::warn!(rule = %self.name, shadow = %self.writer.topic(), partition = partition.index,
                            error = error_name(code), %detail, "the shadow topic's broker refused copies");
                    }
                }
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<ShadowRule> {
        weir_core::config::parse_yaml(yaml, Path::new("sidecar.yaml")).unwrap()
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let origin = Path::new("sidecar.yaml");
        let check = |yaml: &str| validate_rules(&rules(yaml), origin).unwrap_err().to_string();
        let err = check("[{name: a, topic: orders, to: orders}]");
        assert!(err.contains("shadows[0].to") && err.contains("written twice"), "{err}");
        let err = check("[{name: a, topic: orders, to: b, bootstrap: [nohost]}]");
        assert!(err.contains("shadows[0].bootstrap[0]"), "{err}");
        let err = check("[{name: a, topic: orders, to: b, queue_bytes: 10}]");
        assert!(err.contains("shadows[0].queue_bytes"), "{err}");
        let err = check("[{name: a, topic: orders, to: b}, {name: a, topic: x, to: y}]");
        assert!(err.contains("shadows[1].name"), "{err}");
        let err = check("[{name: a, topic: ' ', to: b}]");
        assert!(err.contains("shadows[0].topic"), "{err}");
        // Onto itself is fine on another cluster.
        let other = rules("[{name: a, topic: orders, to: orders, bootstrap: ['staging:9092']}]");
        assert!(validate_rules(&other, origin).is_ok());
    }
}
