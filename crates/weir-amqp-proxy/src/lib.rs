//! The AMQP 0.9.1 sidecar: AMQP clients (RabbitMQ's) talk to it instead of their broker.
//!
//! Owns what is AMQP-specific about putting AMQP on the mesh: how AMQP methods map onto the
//! shared policy engine ([`authz`]: configure, write and read on exchanges and queues, as
//! RabbitMQ's own permissions do, and optionally routing keys), its configuration
//! ([`config`]), metrics per exchange and queue ([`metrics`]), the listener ([`sidecar`]) and
//! the session ([`session`]) that passes frames as the same bytes between a client and its
//! broker, authenticating the login and judging declares, binds, publishes, consumes and
//! gets on the way; a refused method closes its channel with ACCESS_REFUSED, as RabbitMQ
//! would.
//!
//! It must not parse AMQP bytes itself (weir-amqp does) nor own TLS, credentials, the policy
//! engine, audit or metrics plumbing (weir-core does), and it knows nothing of Kafka or MQTT.

pub mod authz;
pub mod config;
pub mod metrics;
pub mod session;
pub mod sidecar;

pub use config::AmqpConfig;
pub use sidecar::{AmqpSidecar, AmqpSidecarError};
