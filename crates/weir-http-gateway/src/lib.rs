//! The HTTP gateway (`weir gateway http`): services that cannot embed a Kafka client produce to
//! Kafka topics with a POST and read them through consumer-group instances, in the Strimzi HTTP
//! bridge's API, or as Server-Sent Events (browsers' EventSource), under the mesh's identities
//! (a client certificate or a bearer JWT) and its Kafka authorization policy.
//!
//! Owns HTTP in front of Kafka: the config ([`config`]), who a request comes from ([`identity`]),
//! the API's errors ([`api`]), records in its JSON ([`records`]), the produce endpoint
//! ([`produce`]), consumer-group instances (`consumers`), event streams ([`events`]) and the server that routes requests to them
//! ([`server`]). The OpenAPI document it serves is
//! `openapi.json` beside this file.
//!
//! It must not talk to Kafka itself (weir-gateway's producer does), nor own TLS, JWT checks,
//! the policy engine or audit (weir-core).

pub mod api;
pub mod config;
mod consumers;
pub mod events;
pub mod identity;
pub mod produce;
pub mod records;
pub mod server;

pub use config::HttpGatewayConfig;
pub use server::{HttpGateway, HttpGatewayError};
