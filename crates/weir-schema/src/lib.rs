//! Schemas for Weir's event policies.
//!
//! Owns what judging a payload against a schema takes, whatever carries the payload: the
//! schema registry wire format ([`wire`]: magic byte, schema id, Protobuf message indexes),
//! a client of a registry's Confluent-compatible API that caches schemas by id and bounds every
//! wait ([`registry`]), and the validators of each format. A Kafka filter, an HTTP gateway or a
//! test can use it alike.
//!
//! It must not know Kafka (records, batches, error codes): callers hand it payload bytes and
//! say what to do with its verdict. Hostile input (payloads and schemas alike: anyone may
//! register a schema) gets an error, never a panic, a hang or an allocation it chose.

pub mod avro;
pub mod json_schema;
pub mod judge;
pub mod protobuf;
pub mod registry;
pub mod wire;
