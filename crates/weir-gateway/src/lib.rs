//! What Weir's gateways (MQTT → Kafka, HTTP → Kafka) share on their Kafka side.
//!
//! Owns the gateway's Kafka client: its settings ([`config`]), a producer that answers only
//! once Kafka has a record on every in-sync replica ([`producer`]), the live tail that reads a
//! topic once and offers each record to every subscriber of it ([`tail`]), a consumer-group
//! member for clients that consume through requests ([`group`]), a key → value
//! store in a compacted topic that every instance holds in memory ([`store`]), and what the
//! mesh's Kafka authorization policy says a gateway's client may read and write ([`authz`]).
//!
//! The Kafka client is librdkafka (the `rdkafka` crate), not the sidecar's own upstream code:
//! a gateway needs a whole client — partitioning like the Java client, batching, idempotent
//! retries across leader changes, fetch positions — and the sidecar's code forwards frames a
//! client made. A gateway writes and reads as itself; the principal of each MQTT or HTTP
//! client is judged here, by the same policy a Kafka sidecar applies.
//!
//! It must not know MQTT or HTTP (the gateways' own crates do), nor listeners, TLS or
//! credentials (weir-core does).

pub mod authz;
pub mod config;
pub mod group;
mod logging;
pub mod producer;
pub mod replay;
pub mod store;
pub mod tail;

pub use config::KafkaConfig;
pub use producer::{KafkaProducer, ProduceError};
/// The Kafka client's own error, for gateways that report a client they could not create.
pub use rdkafka::error::KafkaError;
pub use tail::{Membership, Record, Start, Subscriber, Tail, TailError};
