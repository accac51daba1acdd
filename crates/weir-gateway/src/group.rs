//! A member of a Kafka consumer group, driven by someone who is not a Kafka client: the HTTP
//! gateway's consumer instances (the Strimzi bridge's `/consumers/{group}/instances/{name}`).
//! It subscribes, polls for records, commits and seeks as a Kafka consumer would; its client
//! asks through requests that come now and then, so each call here is bounded in time and
//! size, and the blocking ones run off the runtime's workers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::logging::Logging;
use crate::tail::Record;

/// How long a commit, seek or lookup may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a member starts and keeps its place.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    pub group: String,
    /// Names the member to the brokers (their logs, quotas).
    pub client_id: String,
    /// Where a partition without a committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Commit what was polled every few seconds, without being asked.
    pub auto_commit: bool,
    /// How long the member may go without a poll before the group gives its partitions to
    /// others.
    pub max_poll_interval: Duration,
    /// How much a fetch waits for (librdkafka's default when None).
    pub fetch_min_bytes: Option<u32>,
    /// `read_committed` (records of aborted transactions never show) or `read_uncommitted`.
    pub isolation_level: String,
}

/// A partition and an offset on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Where to move a partition's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    Beginning,
    End,
    Offset(i64),
}

/// Why a member could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(
        "partition {topic}/{partition} is not assigned to this member (poll first: the group assigns partitions then)"
    )]
    NotAssigned { topic: String, partition: i32 },
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the gateway is stopping")]
    Stopped,
}

/// One member of a consumer group.
pub struct GroupMember {
    consumer: Arc<StreamConsumer<Logging>>,
}

impl GroupMember {
    pub fn new(config: &KafkaConfig, settings: &MemberSettings) -> Result<Self, KafkaError> {
        let mut client = config.client_config();
        client
            .set("group.id", &settings.group)
            .set("client.id", &settings.client_id)
            .set("auto.offset.reset", &settings.auto_offset_reset)
            .set("enable.auto.commit", if settings.auto_commit { "true" } else { "false" })
            .set("enable.auto.offset.store", "true")
            .set("max.poll.interval.ms", settings.max_poll_interval.as_millis().to_string())
            .set("isolation.level", &settings.isolation_level);
        if let Some(bytes) = settings.fetch_min_bytes {
            client.set("fetch.min.bytes", bytes.to_string());
        }
        Ok(GroupMember { consumer: Arc::new(client.create_with_context(Logging)?) })
    }

    /// Joins the group for `topics` (replacing any subscription).
    pub fn subscribe(&self, topics: &[String]) -> Result<(), KafkaError> {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)
    }

    pub fn unsubscribe(&self) {
        self.consumer.unsubscribe();
    }

    /// The partitions the group gave this member, per topic.
    pub fn assignment(&self) -> Result<Vec<(String, i32)>, KafkaError> {
        let assigned = self.consumer.assignment()?;
        Ok(assigned.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
    }

    /// Records as they come, waiting up to `wait` for the first: at most `max_records`, and
    /// no more once `max_bytes` of keys and values are taken. What it returns counts as
    /// consumed (a commit without offsets commits past it).
    pub async fn poll(&self, wait: Duration, max_records: usize, max_bytes: usize) -> Vec<Record> {
        let mut records = Vec::new();
        let mut bytes = 0;
        let deadline = Instant::now() + wait;
        while records.len() < max_records && bytes < max_bytes {
            let next = if records.is_empty() {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                // Only what is already here: the first record ended the wait.
                match self.consumer.recv().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            };
            match next {
                Ok(message) => {
                    let topic: Arc<str> = rdkafka::Message::topic(&message).into();
                    let record = Record::from_message(&topic, &message);
                    bytes += record.value.len() + record.key.as_ref().map_or(0, |k| k.len());
                    records.push(record);
                }
                // librdkafka retries on its own; the next poll may do better.
                Err(error) => {
                    tracing::info!(%error, "a consumer group member's poll reports an error");
                    if records.is_empty() && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50).min(deadline - Instant::now())).await;
                        continue;
                    }
                    break;
                }
            }
        }
        records
    }

    /// Commits `offsets` (each the next offset to read), or without them everything polled.
    pub async fn commit(&self, offsets: Option<Vec<Position>>) -> Result<(), MemberError> {
        let consumer = self.consumer.clone();
        blocking(move || {
            match offsets {
                None => consumer.commit_consumer_state(CommitMode::Sync)?,
                Some(offsets) => {
                    let mut list = TopicPartitionList::new();
                    for at in &offsets {
                        list.add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset))?;
                    }
                    consumer.commit(&list, CommitMode::Sync)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Moves where each of `partitions` is read next; every one must be assigned.
    pub async fn seek(&self, partitions: Vec<(String, i32, Seek)>) -> Result<(), MemberError> {
        let consumer = self.consumer.clone();
        blocking(move || {
            let assigned = consumer.assignment()?;
            for (topic, partition, _) in &partitions {
                if assigned.find_partition(topic, *partition).is_none() {
                    return Err(MemberError::NotAssigned { topic: topic.clone(), partition: *partition });
                }
            }
            for (topic, partition, to) in &partitions {
                let offset = match to {
                    Seek::Beginning => Offset::Beginning,
                    Seek::End => Offset::End,
                    Seek::Offset(offset) => Offset::Offset(*offset),
                };
                consumer.seek(topic, *partition, offset, CALL_TIMEOUT)?;
            }
            Ok(())
        })
        .await
    }

    /// Leaves the group (its partitions go to the other members at once) and closes.
    pub async fn close(self) {
        let consumer = self.consumer;
        // Closing waits for the group's answer: off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, MemberError> + Send + 'static,
) -> Result<T, MemberError> {
    tokio::task::spawn_blocking(call).await.map_err(|_| MemberError::Stopped)?
}
