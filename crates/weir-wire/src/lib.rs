//! The Kafka wire codec of Weir.
//!
//! Owns everything about Kafka *bytes*: cutting a TCP stream into length-prefixed frames
//! ([`frame`]), peeking at a request header without decoding the body ([`header`]), decoding and
//! re-encoding only the messages someone asked for ([`message`]), and reading record-batch
//! headers for counting ([`records`]), and the records inside a batch, decompressed within a
//! limit ([`compression`]) and read in place ([`record_view`]). [`schema`] holds Kafka's message schemas as walk
//! programs generated from Kafka's own JSON specs (by `weir-wire-gen`; not edited by hand), and
//! the one walk that runs them: [`resources`] uses it to read the topics, groups and
//! transactional ids a client request names, for authorization, and [`response_bounds`] to check
//! that a broker response's declared lengths fit the frame before it is decoded, and [`errors`]
//! to set a response's error codes in place. [`produce`] and
//! [`fetch`] keep hand-written scanners for the per-request data path, checked against the
//! programs.
//!
//! It must not touch sockets, tasks, configuration or metrics: it works on `AsyncRead` and
//! `Bytes` so the proxy core, gateways and fuzz targets can all use it. Frames nobody decodes
//! stay the very `Bytes` that were read.

pub mod batch;
pub mod compression;
pub mod errors;
pub mod fetch;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod message;
pub mod produce;
pub mod record_view;
pub mod records;
pub mod rename;
pub mod resources;
pub mod response_bounds;
pub mod scan;
pub mod schema;
#[cfg(test)]
mod test_support;
pub mod throttle;
mod walk;

pub use frame::{FrameError, FrameReader};
pub use header::{HeaderError, RequestHeaderPeek};
pub use message::{MessageError, ResponseFrame};

/// Re-exported so that users of the codec name message types from one place.
pub use kafka_protocol;
