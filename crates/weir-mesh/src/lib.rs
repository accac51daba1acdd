//! The mesh as data: the declarative resources `weir ctl` applies and `weir control` stores and
//! pushes — `KafkaCluster`, `MqttBroker`, `AmqpBroker`, `Workload`, `AuthorizationPolicy`,
//! `PeerAuthentication`, `CertificateRevocation` — in the shape Kubernetes users know
//! (`apiVersion`, `kind`, `metadata`, `spec`).
//!
//! Owns: parsing resources from YAML ([`resource`]), checking each kind's `spec` with errors
//! that name the resource and the field ([`kinds`], one module and one match arm per kind), and
//! the mesh state they form with its versions and optimistic concurrency ([`state`]), and what
//! each sidecar runs, rendered from it ([`render`]).
//!
//! Must not touch sockets, files or clocks: the control plane stores and serves this state, the
//! CLI reads files into it; both share these rules so that what `weir ctl diff` predicts is
//! what `weir control` does. Spec fields are the sidecar config file's own (same names, same
//! types from `weir-core` and the protocols' proxy crates), so a section moves between a local file and
//! a resource unchanged.

pub mod error;
pub mod kinds;
pub mod protocol;
pub mod render;
pub mod resource;
pub mod state;

pub use error::MeshError;
pub use kinds::Kind;
pub use protocol::Protocol;
pub use resource::{parse_documents, to_yaml, Metadata, Resource, API_VERSION};
pub use state::{Change, ChangeKind, MeshState};
