//! The MQTT sidecar: MQTT 3.1.1 and 5.0 clients talk to it instead of their broker.
//!
//! Owns what is MQTT-specific about putting MQTT on the mesh: how MQTT operations map onto
//! the shared policy engine ([`authz`]: publishing a topic name, subscribing a topic filter,
//! judged with MQTT's wildcard rules), its configuration ([`config`]), the listener
//! ([`sidecar`]) and the session ([`session`]) that forwards packets as the same bytes
//! between a client and its broker, authenticating CONNECT and judging PUBLISH (retained
//! ones included), SUBSCRIBE and wills on the way.
//!
//! It must not parse MQTT bytes itself (weir-mqtt does) nor own TLS, credentials, the policy
//! engine, audit or metrics plumbing (weir-core does), and it knows nothing of Kafka.

pub mod authz;
pub mod config;
pub mod login;
pub mod metrics;
pub mod session;
pub mod sidecar;

pub use config::MqttConfig;
pub use sidecar::{MqttSidecar, MqttSidecarError};
