//! The mesh state in a compacted Kafka topic, so several control-plane replicas share one
//! state on the cluster the mesh already has (as Confluent Schema Registry keeps its schemas),
//! without consensus code of our own.
//!
//! The topic has one partition; each record is the whole state (key `mesh`, value its JSON),
//! so compaction keeps exactly the latest. Every replica follows the topic (read_committed)
//! and publishes what it reads.
//!
//! Writes are serialized by Kafka's transaction fencing: all replicas write with the same
//! `transactional.id`, and a write starts a new transactional producer, whose
//! `init_transactions` fences every earlier one (their commits fail) and aborts whatever
//! transaction they had open. The writer then reads the partition to its end — nobody else can
//! commit now — computes the next state from the latest committed one, and commits it. Two
//! replicas writing at once: the second to initialise wins, the first is fenced and retries on
//! the new state, so no accepted change is lost and none is computed from a stale state.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use weir_mesh::{MeshError, MeshState};

use super::StoreError;

/// The one key: compaction keeps the latest state.
const KEY: &str = "mesh";
/// How long one Kafka call may take before the write fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Fenced by another replica this many times in a row: give up (the caller may retry).
const MAX_ATTEMPTS: u32 = 10;

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap: String,
    pub topic: String,
    /// Extra librdkafka properties (TLS, SASL towards the brokers).
    pub properties: Vec<(String, String)>,
    /// Names this replica in logs and in the records it writes.
    pub replica: String,
}

impl KafkaSettings {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap).set("broker.address.family", "v4").set("log_level", "3");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    fn error(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Kafka { topic: self.topic.clone(), message: message.to_string() }
    }
}

/// What a write does: the next state from the latest, and what to tell the caller.
pub type Change<'a, R> = &'a dyn Fn(&MeshState) -> Result<(MeshState, R), MeshError>;

/// A write refused by the mesh's rules, or one the store could not make.
pub enum WriteFailure {
    Refused(MeshError),
    Store(StoreError),
    /// Another replica's producer fenced this one: try again on its state.
    Fenced(StoreError),
}

pub struct KafkaStore {
    settings: KafkaSettings,
    /// Offset of the latest state record read, where a writer starts reading.
    latest_offset: std::sync::atomic::AtomicI64,
}

impl KafkaStore {
    /// Makes the topic if it does not exist, reads it to its end, and follows it from then on
    /// into `publish` (a background thread). Returns the store and the state read.
    pub async fn open(settings: KafkaSettings) -> Result<(Arc<Self>, MeshState), StoreError> {
        ensure_topic(&settings).await?;
        let store = Arc::new(Self { settings, latest_offset: std::sync::atomic::AtomicI64::new(0) });
        let reader = store.clone();
        let state = tokio::task::spawn_blocking(move || reader.read_to_end(None))
            .await
            .map_err(|e| store.settings.error(e))??;
        let state = state.unwrap_or_default();
        tracing::info!(topic = %store.settings.topic, version = state.version, "mesh state read from Kafka");
        Ok((store, state))
    }

    /// Follows the topic for the life of the process (a thread of its own), publishing every
    /// newer state.
    pub fn follow(self: &Arc<Self>, publish: watch::Sender<Arc<MeshState>>) {
        let store = self.clone();
        std::thread::Builder::new()
            .name("weir-kafka-store".into())
            .spawn(move || store.follow_blocking(publish))
            .expect("spawn the Kafka store's reader thread");
    }

    fn follow_blocking(&self, publish: watch::Sender<Arc<MeshState>>) {
        let consumer = match self.consumer(false) {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::error!(%err, "cannot follow the Kafka store; this replica will not see other replicas' changes");
                return;
            }
        };
        let start = self.latest_offset.load(std::sync::atomic::Ordering::Relaxed);
        if let Err(err) = self.assign(&consumer, Offset::Offset(start)) {
            tracing::error!(%err, "cannot follow the Kafka store");
            return;
        }
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let Some(state) = self.decode(message.payload(), message.offset()) else { continue };
                    self.latest_offset.fetch_max(message.offset(), std::sync::atomic::Ordering::Relaxed);
                    publish.send_if_modified(|current| {
                        if state.version > current.version {
                            tracing::info!(version = state.version, "mesh state changed (read from Kafka)");
                            *current = Arc::new(state);
                            true
                        } else {
                            false
                        }
                    });
                }
                Some(Err(err)) => tracing::warn!(%err, "reading the Kafka store"),
                None => {}
            }
        }
    }

    fn decode(&self, payload: Option<&[u8]>, offset: i64) -> Option<MeshState> {
        match serde_json::from_slice::<MeshState>(payload?) {
            Ok(state) => Some(state),
            Err(err) => {
                tracing::error!(offset, %err, topic = %self.settings.topic, "a record of the Kafka store is not a mesh state; skipped");
                None
            }
        }
    }

    fn consumer(&self, eof: bool) -> Result<BaseConsumer, StoreError> {
        let mut config = self.settings.config();
        config
            .set("group.id", format!("weir-control-{}", self.settings.replica))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", if eof { "true" } else { "false" });
        config.create().map_err(|e| self.settings.error(e))
    }

    fn assign(&self, consumer: &BaseConsumer, offset: Offset) -> Result<(), StoreError> {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(&self.settings.topic, 0, offset).map_err(|e| self.settings.error(e))?;
        consumer.assign(&partitions).map_err(|e| self.settings.error(e))
    }

    /// Reads from `from` (or the latest known offset) to the end of what is committed: the
    /// latest state there, if any record is.
    fn read_to_end(&self, from: Option<i64>) -> Result<Option<MeshState>, StoreError> {
        let consumer = self.consumer(true)?;
        let start = from.unwrap_or_else(|| self.latest_offset.load(std::sync::atomic::Ordering::Relaxed));
        self.assign(&consumer, Offset::Offset(start))?;
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        let mut latest = None;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(self.settings.error(format!("could not read to the end within {CALL_TIMEOUT:?}")));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    if let Some(state) = self.decode(message.payload(), message.offset()) {
                        self.latest_offset.fetch_max(message.offset(), std::sync::atomic::Ordering::Relaxed);
                        latest = Some(state);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(latest),
                Some(Err(err)) => return Err(self.settings.error(err)),
                None => {}
            }
        }
    }

    /// Writes the state `change` makes of the latest committed one, serialized with every other
    /// replica by transaction fencing (see the module). Returns the new state (the same one if
    /// nothing changed) and what `change` said. Blocking: call it off the runtime's threads.
    pub fn write<R>(&self, change: Change<'_, R>) -> Result<(MeshState, R), WriteFailure> {
        let mut last_error = None;
        for attempt in 1..=MAX_ATTEMPTS {
            match self.try_write(change) {
                Ok(done) => return Ok(done),
                Err(WriteFailure::Fenced(err)) => {
                    tracing::info!(attempt, "another replica wrote at the same time; trying again on its state");
                    last_error = Some(err);
                    // Two replicas that keep fencing each other would never finish: wait a
                    // random while, longer each time, before fencing back.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0);
                    let jitter = u64::from(nanos % 200);
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt) + jitter));
                }
                Err(other) => return Err(other),
            }
        }
        Err(WriteFailure::Store(last_error.unwrap_or_else(|| self.settings.error("no attempt made"))))
    }

    fn try_write<R>(&self, change: Change<'_, R>) -> Result<(MeshState, R), WriteFailure> {
        let store = |e: StoreError| WriteFailure::Store(e);
        // What the producer says: fenced by another replica, or something else gone wrong.
        let producing = |e: KafkaError| {
            let fenced = matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                        | RDKafkaErrorCode::TransactionCoordinatorFenced
                )
            );
            let err = self.settings.error(e);
            if fenced {
                WriteFailure::Fenced(err)
            } else {
                WriteFailure::Store(err)
            }
        };
        let mut config = self.settings.config();
        config
            .set("transactional.id", format!("weir-control-{}", self.settings.topic))
            .set("enable.idempotence", "true")
            .set("transaction.timeout.ms", "30000")
            .set("compression.type", "lz4")
            .set("message.max.bytes", "16777216");
        let producer: BaseProducer = config.create().map_err(|e| store(self.settings.error(e)))?;
        // From here on no other replica can commit: read what the last one did.
        producer.init_transactions(CALL_TIMEOUT).map_err(producing)?;
        let latest = self.read_to_end(None).map_err(store)?.unwrap_or_default();
        let (next, said) = change(&latest).map_err(WriteFailure::Refused)?;
        if next.version == latest.version {
            return Ok((latest, said));
        }
        let value = serde_json::to_vec(&next).map_err(|e| store(self.settings.error(e)))?;
        producer.begin_transaction().map_err(producing)?;
        let record = BaseRecord::to(&self.settings.topic).key(KEY).payload(&value);
        if let Err((err, _)) = producer.send(record) {
            let _ = producer.abort_transaction(CALL_TIMEOUT);
            return Err(producing(err));
        }
        producer.commit_transaction(CALL_TIMEOUT).map_err(producing)?;
        tracing::info!(version = next.version, replica = %self.settings.replica, "mesh state written to Kafka");
        Ok((next, said))
    }
}

/// Creates the topic (one partition, compacted, replicated up to three times) if it is missing.
async fn ensure_topic(settings: &KafkaSettings) -> Result<(), StoreError> {
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(settings.config().create().map_err(|e| settings.error(e))?);
    let asking = admin.clone();
    let brokers = tokio::task::spawn_blocking(move || {
        asking.inner().fetch_metadata(None, CALL_TIMEOUT).map(|m| m.brokers().len())
    })
    .await
    .map_err(|e| settings.error(e))?
    .map_err(|e| settings.error(format!("cannot reach the cluster: {e}")))?;
    let replication = brokers.clamp(1, 3) as i32;
    let topic = NewTopic::new(&settings.topic, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "16777216")
        .set("min.insync.replicas", if replication >= 3 { "2" } else { "1" });
    let results = admin.create_topics(&[topic], &AdminOptions::new()).await.map_err(|e| settings.error(e))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic = %settings.topic, replication, "created the Kafka store's topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(settings.error(format!("cannot create the topic: {code}"))),
        }
    }
    Ok(())
}
