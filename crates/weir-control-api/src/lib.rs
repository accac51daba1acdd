//! The protocol between sidecars and `weir control`: the protobuf messages and the `Mesh`
//! gRPC service, generated from `proto/weir/mesh/v1/mesh.proto` and checked in (the test
//! `tests/generated.rs` regenerates and compares).
//!
//! Owns the wire shape only: what a sidecar does with a snapshot, and how the control plane
//! renders one, belong to their crates.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!("generated/weir.mesh.v1.rs");
}
