//! The protocol between sidecars and `weir control`: the protobuf messages and the `Mesh`
//! gRPC service, generated from `proto/weir/mesh/v1/mesh.proto` and checked in (the test
//! `tests/generated.rs` regenerates and compares).
//!
//! Owns the wire shape only: what a sidecar does with a snapshot, and how the control plane
//! renders one, belong to their crates.

pub mod codec;

/// How the control plane's refusal of a revoked certificate begins (status UNAUTHENTICATED):
/// a sidecar told this drops its certificate and asks for a new one with its join token.
pub const REVOKED: &str = "certificate revoked";

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!("generated/weir.mesh.v1.rs");
}
