//! The Kafka sidecar of Weir (`weir proxy`).
//!
//! Owns what is Kafka-specific on the data path: a bootstrap listener plus one listener per
//! broker ([`directory`]), one upstream connection per client connection with responses kept
//! in request order ([`session`]), the live configuration ([`snapshot`]), the filter chain
//! every per-request policy plugs into ([`filter`]) and the policies themselves ([`filters`]:
//! SASL, fetch sessions bound to their principal, topic-level authorization, quotas, fault
//! injection, shadowing, event policies, traffic metrics, address rewriting), and Kafka metrics ([`metrics`]).
//!
//! It must not own what other protocols share (config file loading, the admin endpoint, log
//! setup, shutdown signals: those live in `weir-core`) nor the bytes-level codec (`weir-wire`).

pub mod alias;
mod answers;
pub mod breaker;
pub mod canary;
pub mod config;
pub mod directory;
pub mod encryption;
pub mod fault;
pub mod fetched;
pub mod filter;
pub mod filters;
pub mod managed;
pub mod metrics;
pub mod outlier;
pub mod quota;
pub mod rewrite;
pub mod safeguard;
pub mod schema_rules;
pub mod session;
pub mod shadow;
pub mod shared;
pub mod side;
pub mod sidecar;
pub mod snapshot;
pub mod topic_ids;
pub mod topic_limits;
pub mod traces;
pub mod transform;
pub mod upstream;
pub mod versions;
pub mod vocabulary;

pub use config::SidecarConfig;
pub use sidecar::{Sidecar, SidecarError};
