//! AMQP 0.9.1 bytes (as RabbitMQ speaks it) for Weir's AMQP sidecar.
//!
//! Owns what reading and writing AMQP takes: the protocol header and a frame's boundaries
//! ([`frame`]), the arguments of the methods a policy needs read in place, every length
//! checked against the bytes that are there ([`method`]: login, declare, bind, publish,
//! consume, get, and the broker's answers that name queues and consumers), field tables
//! walked without building them ([`table`]), and the frames a sidecar writes in a broker's
//! stead (channel and connection closes with a reply code).
//!
//! It must not know sockets, tasks or policy: callers hand it bytes and decide. Hostile
//! input gets an [`AmqpError`] that says what was wrong and where, never a panic or an
//! allocation the input chose.

pub mod frame;
pub mod method;
pub mod table;

pub use frame::{FrameHeader, FrameType, PROTOCOL_HEADER};

/// What the bytes do not hold as AMQP 0.9.1 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpError {
    #[error("frame type {0} is not one of AMQP's (1 method, 2 header, 3 body, 8 heartbeat)")]
    FrameType(u8),
    #[error("a frame of {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("a frame ends with {0:#04x}, not the frame-end octet 0xce")]
    FrameEnd(u8),
    #[error("{method}: {what} at byte {at} of its arguments")]
    Malformed { method: &'static str, what: &'static str, at: usize },
}
