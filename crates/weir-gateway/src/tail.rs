//! The live tail: each Kafka topic some client of the gateway subscribes to is read once, from
//! the end, and every record is offered to each subscriber of that topic — a thousand MQTT
//! subscribers of one topic cost one fetch, not a thousand.
//!
//! A subscriber joins at the topic's end as Kafka has it when it joins (what is written after
//! the join reaches it; nothing before it does) and decides itself what it wants of each
//! record (an MQTT session: the records whose topic its filters match). A subscriber that
//! cannot take a record (its queue is full) says so and is dropped from the tail: it knows
//! what it missed from the record it refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::logging::Logging;

/// How long a metadata or offsets request may take when a subscriber joins.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One record read from Kafka, shared by every subscriber it is offered to.
#[derive(Debug)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, as Kafka has it (create or append time); None when the
    /// record has none.
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(Box<str>, Bytes)>,
    /// What the first subscriber to look worked out from the record, for every other one (the
    /// MQTT gateway: the record's MQTT topic name), so it is worked out once.
    pub derived: OnceLock<Option<Arc<str>>>,
}

impl Record {
    pub fn from_message(topic: &Arc<str>, message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.into(), h.value.map(Bytes::copy_from_slice).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: topic.clone(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(Bytes::copy_from_slice),
            value: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
            headers,
            derived: OnceLock::new(),
        }
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(key, _)| &**key == name).map(|(_, value)| value)
    }
}

/// Where on a topic's partitions to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record each partition still holds.
    Earliest,
    /// Past the newest: what is written from now on.
    Latest,
    /// The first record with a timestamp at or after these milliseconds since the epoch (the
    /// end, where there is none).
    Time(i64),
}

/// Someone the tail offers records to.
pub trait Subscriber: Send + Sync + 'static {
    /// Takes `record` if it wants it; false when it cannot take it (it is then dropped from
    /// the tail of every topic it joined through this membership).
    fn offer(&self, record: &Arc<Record>) -> bool;
}

/// Why a subscriber could not join a topic's tail.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("Kafka has no topic {0}")]
    NoTopic(String),
    #[error("cannot look up topic {topic} in Kafka: {error}")]
    Kafka { topic: String, error: KafkaError },
    #[error("the gateway is stopping")]
    Stopped,
}

enum Command {
    Join { topic: Arc<str>, from: Vec<(i32, i64)>, id: u64, subscriber: Arc<dyn Subscriber>, done: oneshot::Sender<()> },
    Leave { topic: Arc<str>, id: u64 },
}

/// A subscriber's place on one topic's tail; dropping it leaves.
pub struct Membership {
    topic: Arc<str>,
    id: u64,
    from: Vec<(i32, i64)>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Membership {
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Where on each partition (sorted) the subscriber joined: the first offset offered.
    pub fn from(&self) -> &[(i32, i64)] {
        &self.from
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave { topic: self.topic.clone(), id: self.id });
    }
}

/// The gateway's one reader of live records.
pub struct Tail {
    consumer: Arc<StreamConsumer<Logging>>,
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
}

impl Tail {
    /// Creates the reader and starts following, until `stop`.
    pub fn start(config: &KafkaConfig, stop: CancellationToken) -> Result<Arc<Self>, KafkaError> {
        let mut client = config.client_config();
        // Positions are the tail's own: it never joins its group nor commits (librdkafka wants
        // a group id for adding partitions to an assignment all the same).
        client
            .set("group.id", "weir-gateway-tail")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        if !config.properties.contains_key("fetch.wait.max.ms") {
            client.set("fetch.wait.max.ms", "100");
        }
        let consumer: Arc<StreamConsumer<Logging>> = Arc::new(client.create_with_context(Logging)?);
        let (commands, received) = mpsc::unbounded_channel();
        tokio::spawn(follow(consumer.clone(), received, stop));
        Ok(Arc::new(Tail { consumer, commands, next_id: AtomicU64::new(1) }))
    }

    /// Joins `topic` at its end: records written from now on are offered to `subscriber` until
    /// the membership is dropped (or the subscriber refuses one).
    pub async fn join(&self, topic: &str, subscriber: Arc<dyn Subscriber>) -> Result<Membership, TailError> {
        let from = self.ends(topic).await?;
        let topic: Arc<str> = topic.into();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, joined) = oneshot::channel();
        let join = Command::Join { topic: topic.clone(), from: from.clone(), id, subscriber, done };
        self.commands.send(join).map_err(|_| TailError::Stopped)?;
        joined.await.map_err(|_| TailError::Stopped)?;
        Ok(Membership { topic, id, from, commands: self.commands.clone() })
    }

    /// Where each partition of `topic` ends now.
    async fn ends(&self, topic: &str) -> Result<Vec<(i32, i64)>, TailError> {
        self.offsets(topic, Start::Latest).await
    }

    /// The offset on each partition of `topic` (sorted by partition) where reading from
    /// `start` begins.
    pub async fn offsets(&self, topic: &str, start: Start) -> Result<Vec<(i32, i64)>, TailError> {
        let consumer = self.consumer.clone();
        let name = topic.to_owned();
        let lookup = move || -> Result<Vec<(i32, i64)>, TailError> {
            let kafka = |error| TailError::Kafka { topic: name.clone(), error };
            let metadata = consumer.fetch_metadata(Some(&name), LOOKUP_TIMEOUT).map_err(kafka)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == name) else {
                return Err(TailError::NoTopic(name.clone()));
            };
            if found.error().is_some() || found.partitions().is_empty() {
                return Err(TailError::NoTopic(name.clone()));
            }
            // ListOffsets' timestamps: -1 asks for each partition's end, -2 for its start.
            let asked = match start {
                Start::Earliest => Offset::Beginning,
                Start::Latest => Offset::End,
                Start::Time(millis) => Offset::Offset(millis.max(0)),
            };
            let mut query = TopicPartitionList::new();
            for partition in found.partitions() {
                query.add_partition_offset(&name, partition.id(), asked).map_err(kafka)?;
            }
            let answered = consumer.offsets_for_times(query, LOOKUP_TIMEOUT).map_err(kafka)?;
            let mut offsets = Vec::new();
            for element in answered.elements() {
                let offset = match (element.error(), element.offset()) {
                    (Ok(()), Offset::Offset(offset)) => offset,
                    // No record that late: the partition's end.
                    (Ok(()), Offset::End) => {
                        let (_, high) =
                            consumer.fetch_watermarks(&name, element.partition(), LOOKUP_TIMEOUT).map_err(kafka)?;
                        high
                    }
                    (Err(error), _) => return Err(kafka(error)),
                    (Ok(()), _) => return Err(kafka(KafkaError::OffsetFetch(RDKafkaErrorCode::OffsetOutOfRange))),
                };
                offsets.push((element.partition(), offset));
            }
            offsets.sort_unstable();
            Ok(offsets)
        };
        tokio::task::spawn_blocking(lookup).await.map_err(|_| TailError::Stopped)?
    }
}

/// A subscriber of one topic, and where on each partition it starts.
struct Follower {
    id: u64,
    /// (partition, first offset) sorted by partition.
    from: Vec<(i32, i64)>,
    subscriber: Arc<dyn Subscriber>,
}

impl Follower {
    fn wants(&self, partition: i32, offset: i64) -> bool {
        match self.from.binary_search_by_key(&partition, |(p, _)| *p) {
            Ok(at) => offset >= self.from[at].1,
            // A partition added after the join: all of it is new.
            Err(_) => true,
        }
    }
}

/// Reads the followed topics and offers each record to their followers, taking joins and
/// leaves between records.
async fn follow(
    consumer: Arc<StreamConsumer<Logging>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let mut topics: HashMap<Arc<str>, Vec<Follower>> = HashMap::new();
    let mut failures_logged = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            command = commands.recv() => match command {
                None => return,
                Some(Command::Join { topic, from, id, subscriber, done }) => {
                    let followers = topics.entry(topic.clone()).or_default();
                    if followers.is_empty() {
                        assign(&consumer, &topic, &from, true);
                    }
                    followers.push(Follower { id, from, subscriber });
                    let _ = done.send(());
                }
                Some(Command::Leave { topic, id }) => {
                    if let Some(followers) = topics.get_mut(&topic) {
                        followers.retain(|f| f.id != id);
                        if followers.is_empty() {
                            topics.remove(&topic);
                            assign(&consumer, &topic, &[], false);
                        }
                    }
                }
            },
            message = consumer.recv(), if !topics.is_empty() => match message {
                Ok(message) => {
                    let Some((topic, followers)) = topics.get_key_value(message.topic()) else { continue };
                    let (partition, offset) = (message.partition(), message.offset());
                    let record = Arc::new(Record::from_message(topic, &message));
                    let refused: Vec<u64> = followers
                        .iter()
                        .filter(|f| f.wants(partition, offset) && !f.subscriber.offer(&record))
                        .map(|f| f.id)
                        .collect();
                    if !refused.is_empty() {
                        let topic = topic.clone();
                        let followers = topics.get_mut(&topic).expect("looked up above");
                        followers.retain(|f| !refused.contains(&f.id));
                        if followers.is_empty() {
                            topics.remove(&topic);
                            assign(&consumer, &topic, &[], false);
                        }
                    }
                }
                Err(error) => {
                    // librdkafka retries on its own; say so now and then, not per poll.
                    failures_logged += 1;
                    if failures_logged.is_power_of_two() {
                        tracing::warn!(%error, times = failures_logged, "the gateway's Kafka reader reports an error");
                    }
                }
            },
        }
    }
}

/// Starts reading `topic` at `from` (`add`), or stops reading all its partitions.
fn assign(consumer: &StreamConsumer<Logging>, topic: &str, from: &[(i32, i64)], add: bool) {
    let result = if add {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in from {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        consumer.incremental_assign(&list)
    } else {
        match consumer.assignment() {
            Ok(assigned) => {
                let mut list = TopicPartitionList::new();
                for element in assigned.elements_for_topic(topic) {
                    list.add_partition(topic, element.partition());
                }
                consumer.incremental_unassign(&list)
            }
            Err(error) => Err(error),
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, topic, add, "the gateway's Kafka reader could not change what it reads");
    }
}
