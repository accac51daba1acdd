//! The HTTP gateway (`weir gateway http`): services that cannot embed a Kafka client produce to
//! Kafka topics with a POST, in the Strimzi HTTP bridge's API, under the mesh's identities (a
//! client certificate or a bearer JWT) and its Kafka authorization policy.
//!
//! Owns HTTP in front of Kafka: the config ([`config`]), who a request comes from ([`identity`]),
//! the API's errors ([`api`]), the produce endpoint's bodies and answers ([`produce`]) and the
//! server that routes requests to them ([`server`]). The OpenAPI document it serves is
//! `openapi.json` beside this file.
//!
//! It must not talk to Kafka itself (weir-gateway's producer does), nor own TLS, JWT checks,
//! the policy engine or audit (weir-core).

pub mod api;
pub mod config;
pub mod identity;
pub mod produce;
pub mod server;

pub use config::HttpGatewayConfig;
pub use server::{HttpGateway, HttpGatewayError};
