//! The gateways' producer: a record counts as written only when Kafka says every in-sync
//! replica has it (`acks=all`), idempotently (a retry after a lost answer writes nothing
//! twice), keyed records on the partition the Java client would choose (`murmur2_random`), so
//! an MQTT device and a Java service writing the same key meet in one partition.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::config::KafkaConfig;
use crate::logging::Logging;

/// One record to write.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// None: the partitioner decides (by key; without one, sticky batches).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// None: a tombstone (what a compacted topic forgets the key by).
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Where Kafka put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub partition: i32,
    pub offset: i64,
}

/// What went wrong with a record, in the terms a gateway answers its client in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceFailure {
    /// Kafka refused the gateway (its own ACLs).
    NotAuthorized,
    /// The topic does not exist (and Kafka does not create it).
    UnknownTopic,
    /// Larger than the topic or broker takes.
    TooLarge,
    /// A quota held it back beyond the delivery timeout.
    Quota,
    /// Not acknowledged within the delivery timeout.
    TimedOut,
    /// Anything else.
    Other,
}

/// A record Kafka did not take, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Kafka did not take the record for topic {topic}: {message}")]
pub struct ProduceError {
    pub topic: String,
    pub failure: ProduceFailure,
    pub message: String,
}

impl ProduceError {
    fn new(topic: &str, error: &KafkaError) -> Self {
        use RDKafkaErrorCode as E;
        let failure = match error.rdkafka_error_code() {
            Some(E::TopicAuthorizationFailed | E::ClusterAuthorizationFailed) => ProduceFailure::NotAuthorized,
            Some(E::UnknownTopicOrPartition | E::UnknownTopic | E::UnknownPartition) => ProduceFailure::UnknownTopic,
            Some(E::MessageSizeTooLarge | E::InvalidMessageSize | E::InvalidRecord) => ProduceFailure::TooLarge,
            Some(E::ThrottlingQuotaExceeded) => ProduceFailure::Quota,
            Some(E::MessageTimedOut | E::RequestTimedOut) => ProduceFailure::TimedOut,
            _ => ProduceFailure::Other,
        };
        ProduceError { topic: topic.to_owned(), failure, message: error.to_string() }
    }

    /// Whether the same record could be written if sent again later (the client may retry).
    pub fn retryable(&self) -> bool {
        matches!(self.failure, ProduceFailure::TimedOut | ProduceFailure::Quota | ProduceFailure::Other)
    }
}

/// A record handed to the producer, not yet acknowledged.
pub struct Pending {
    topic: Box<str>,
    delivery: DeliveryFuture,
}

impl Pending {
    /// Waits for Kafka's acknowledgement (acks=all), or its refusal.
    pub async fn written(self) -> Result<Written, ProduceError> {
        match self.delivery.await {
            Ok(Ok(delivery)) => Ok(Written { partition: delivery.partition, offset: delivery.offset }),
            Ok(Err((error, _))) => Err(ProduceError::new(&self.topic, &error)),
            Err(_) => Err(ProduceError {
                topic: self.topic.into(),
                failure: ProduceFailure::Other,
                message: "the producer was closed".into(),
            }),
        }
    }
}

#[derive(Clone)]
pub struct KafkaProducer {
    inner: FutureProducer<Logging>,
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut client = config.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
        if !config.properties.contains_key("linger.ms") {
            client.set("linger.ms", "2");
        }
        // A gateway's client names a topic; it must not create one by naming it (a typo would).
        if !config.properties.contains_key("allow.auto.create.topics") {
            client.set("allow.auto.create.topics", "false");
        }
        Ok(KafkaProducer { inner: client.create_with_context(Logging)? })
    }

    /// Hands `record` to the producer; while its queue is full, waits. The record is written
    /// (or fails) whether or not the [`Pending`] is awaited.
    pub async fn send(&self, record: Outgoing<'_>) -> Result<Pending, ProduceError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in record.headers {
            headers = headers.insert(Header { key, value: Some(*value) });
        }
        let mut outgoing = FutureRecord::to(record.topic).headers(headers);
        if let Some(value) = record.value {
            outgoing = outgoing.payload(value);
        }
        if let Some(key) = record.key {
            outgoing = outgoing.key(key);
        }
        if let Some(partition) = record.partition {
            outgoing = outgoing.partition(partition);
        }
        loop {
            match self.inner.send_result(outgoing) {
                Ok(delivery) => return Ok(Pending { topic: record.topic.into(), delivery }),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    outgoing = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => return Err(ProduceError::new(record.topic, &error)),
            }
        }
    }
}
