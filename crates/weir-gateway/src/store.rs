//! A key → value store in a compacted Kafka topic, held in memory by every gateway instance
//! that opens it: the MQTT gateway's persistent sessions live here, so a gateway restarted (or
//! another instance) finds them.
//!
//! Opening reads the topic to its end before answering anything; after that a reader follows
//! it, so what another instance writes arrives within moments. A write returns once Kafka has
//! it on every in-sync replica (and is in this instance's memory at once). A removal writes a
//! tombstone, which compaction turns into nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::logging::Logging;
use crate::producer::{KafkaProducer, Outgoing, ProduceError};

/// How long opening may take to reach the cluster and read the topic.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a store could not open.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the store in Kafka topic {topic}: {message}")]
pub struct StoreError {
    pub topic: String,
    pub message: String,
}

pub struct KeyedStore {
    topic: String,
    entries: RwLock<HashMap<String, Bytes>>,
    producer: KafkaProducer,
}

impl KeyedStore {
    /// Creates the topic if it is missing (compacted, `partitions`, replicated up to three
    /// times), reads it to its end, and follows it until `stop`.
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        partitions: i32,
        producer: KafkaProducer,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let error = |message: String| StoreError { topic: topic.to_owned(), message };
        ensure_topic(config, topic, partitions).await.map_err(error)?;
        let store = Arc::new(KeyedStore { topic: topic.to_owned(), entries: RwLock::default(), producer });
        let (reader, settings) = (store.clone(), config.clone());
        let consumer = tokio::task::spawn_blocking(move || reader.read_to_end(&settings))
            .await
            .map_err(|e| error(e.to_string()))?
            .map_err(|e| error(e.to_string()))?;
        let follower = store.clone();
        tokio::task::spawn_blocking(move || follower.follow(consumer, stop));
        Ok(store)
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Every entry whose key `wanted` accepts.
    pub fn entries(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Bytes)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.iter().filter(|(key, _)| wanted(key)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Writes `value` under `key` (None removes it); returns once Kafka has it.
    pub async fn put(&self, key: &str, value: Option<&[u8]>) -> Result<(), ProduceError> {
        let record = Outgoing { topic: &self.topic, partition: None, key: Some(key.as_bytes()), value, headers: &[] };
        self.producer.send(record).await?.written().await?;
        self.apply(key, value.map(Bytes::copy_from_slice));
        Ok(())
    }

    fn apply(&self, key: &str, value: Option<Bytes>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(value) => entries.insert(key.to_owned(), value),
            None => entries.remove(key),
        };
    }

    fn apply_message(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
            self.apply(key, message.payload().map(Bytes::copy_from_slice));
        }
    }

    /// Reads every partition from its beginning to its end; the consumer, positioned there.
    fn read_to_end(&self, config: &KafkaConfig) -> Result<BaseConsumer<Logging>, KafkaError> {
        let mut client = config.client_config();
        client
            .set("group.id", "weir-gateway-store")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<Logging> = client.create_with_context(Logging)?;
        let deadline = std::time::Instant::now() + OPEN_TIMEOUT;
        // A topic just created may take a moment to show its partitions.
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(&self.topic), OPEN_TIMEOUT)?;
            let partitions: Vec<i32> =
                metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
            if !partitions.is_empty() {
                break partitions;
            }
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment.add_partition_offset(&self.topic, *partition, Offset::Beginning)?;
        }
        let mut open: std::collections::HashSet<i32> = partitions.into_iter().collect();
        consumer.assign(&assignment)?;
        while !open.is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OperationTimedOut));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => self.apply_message(&message),
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => tracing::info!(%error, topic = %self.topic, "reading the store"),
                None => {}
            }
        }
        Ok(consumer)
    }

    /// Applies what arrives (other instances' writes, and this one's again) until `stop`.
    fn follow(&self, consumer: BaseConsumer<Logging>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => self.apply_message(&message),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(error)) => tracing::info!(%error, topic = %self.topic, "following the store"),
            }
        }
    }
}

/// Creates `topic` (compacted) if it is missing.
async fn ensure_topic(config: &KafkaConfig, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: Arc<AdminClient<Logging>> =
        Arc::new(config.client_config().create_with_context(Logging).map_err(|e| e.to_string())?);
    let asking = admin.clone();
    let brokers = tokio::task::spawn_blocking(move || {
        asking.inner().fetch_metadata(None, OPEN_TIMEOUT).map(|m| m.brokers().len())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let replication = brokers.clamp(1, 3) as i32;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact")
        .set("min.insync.replicas", if replication >= 3 { "2" } else { "1" });
    let results = admin.create_topics(&[new], &AdminOptions::new()).await.map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, replication, "created a gateway store's topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create the topic: {code}")),
        }
    }
    Ok(())
}
