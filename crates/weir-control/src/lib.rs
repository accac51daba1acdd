//! `weir control`: the mesh's control plane, and `weir ctl`, the CLI that talks to it.
//!
//! Owns: the store of the mesh state ([`store`]: a file in the data directory, written
//! atomically, or a compacted Kafka topic shared by replicas), the one place writes are serialized and versions published ([`plane`]), the
//! HTTP API ([`api`] server side, [`client`] client side), what each `weir ctl` command
//! sends and prints ([`ctl`]), the sidecars' configuration streams ([`mesh`]) and what is
//! known of each sidecar ([`sidecars`]), and the topology merged from their reports
//! ([`topology`]).
//!
//! Must not decide what a valid mesh is (that is `weir-mesh`, shared with the CLI so that a
//! dry run predicts the real one) and knows nothing of Kafka's wire.

pub mod api;
pub mod ca;
pub mod client;
pub mod ctl;
pub mod mesh;
pub mod plane;
pub mod sidecars;
pub mod store;
pub mod topology;
pub mod ui;

pub use plane::{ControlPlane, WriteError};
pub use store::{FileStore, StoreError};
