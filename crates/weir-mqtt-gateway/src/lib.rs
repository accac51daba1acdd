//! The MQTT gateway (`weir gateway mqtt`): MQTT 3.1.1 and 5.0 clients publish to and
//! subscribe to Kafka topics without a Kafka client, under the mesh's identities and its Kafka
//! authorization policy.
//!
//! Owns what is particular to MQTT in front of Kafka: the rules mapping MQTT topics to Kafka
//! topics and keys and back ([`mapping`]), the config ([`config`]), the listener ([`gateway`])
//! and each connection ([`session`]): its login, its publishes written to Kafka and
//! acknowledged once Kafka has them ([`publish`]), its subscriptions fed from Kafka's live
//! tail and filtered here by MQTT's rules ([`subscribe`]).
//!
//! It must not parse MQTT bytes (weir-mqtt does), talk to Kafka itself (weir-gateway's
//! producer and tail do) nor own TLS, credentials, the policy engine or audit (weir-core).

pub mod config;
pub mod gateway;
pub mod mapping;
pub mod publish;
pub mod session;
pub mod sessions;
pub mod subscribe;

pub use config::MqttGatewayConfig;
pub use gateway::{MqttGateway, MqttGatewayError};
