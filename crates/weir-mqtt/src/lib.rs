//! MQTT bytes (3.1, 3.1.1 and 5.0) for Weir's MQTT sidecar and gateway.
//!
//! Owns what reading and writing MQTT takes: a packet's fixed header and length
//! ([`frame`]), the fields of the packets a policy or the gateway needs read in place, every
//! length checked against the bytes that are there ([`packet`]: CONNECT with its MQTT 5
//! properties, PUBLISH, SUBSCRIBE, UNSUBSCRIBE), the answers a sidecar gives in a broker's
//! stead (a refused SUBACK, CONNACK) and what the gateway, being the broker, writes (CONNACK,
//! PUBLISH, UNSUBACK, PINGRESP, MQTT 5 DISCONNECT with a reason), and MQTT's topic names
//! and filters: wildcards matched as the spec says, and whether one filter is within
//! another ([`topic`]).
//!
//! It must not know sockets, tasks or policy: callers hand it bytes and decide. Hostile
//! input gets an [`MqttError`] that says what was wrong and where, never a panic or an
//! allocation the input chose.

pub mod frame;
pub mod packet;
pub mod topic;

pub use frame::{FixedHeader, PacketType, MAX_REMAINING_LENGTH};

/// What the bytes do not hold as MQTT says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    #[error("malformed remaining length: {0}")]
    RemainingLength(&'static str),
    #[error("a packet of {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("packet type {0} is reserved")]
    ReservedType(u8),
    #[error("{packet}: flags {flags:#06b} are not the ones MQTT fixes for it")]
    BadFlags { packet: &'static str, flags: u8 },
    #[error("{packet}: {what} at byte {at}")]
    Malformed { packet: &'static str, what: &'static str, at: usize },
    #[error("protocol {name:?} level {level} is not MQTT 3.1, 3.1.1 or 5.0")]
    UnknownProtocol { name: String, level: u8 },
}
