//! The filters of the Kafka sidecar, each one policy in one file. `Shared::filters_for` puts
//! them in a chain for each connection.
//!
//! Chain order (requests pass it forwards, responses backwards):
//!
//! 1. [`sasl`]: SASL terminated at the sidecar; until a client authenticated nothing of it
//!    reaches a broker.
//! 2. [`fetch_sessions`]: a fetch session serves only the principal that opened it.
//! 3. [`alias`]: topic aliases; the client's names become the cluster's here, so that every
//!    policy after it speaks of the topics really read and written.
//! 4. [`authz`]: topic-level authorization, with partial answers.
//! 5. [`topic_limits`]: topics created or grown outside the limits refused (POLICY_VIOLATION).
//!    After authorization, so that a topic the principal may not create is refused as such.
//! 6. [`safeguard`]: writes that break a produce safeguard (acks, compression, batch size,
//!    client id, read-only) refused per partition. After authorization, like topic limits.
//! 7. [`quota`]: byte rates and request time per principal; a client over its quota is told
//!    to back off.
//! 8. [`traffic`]: records, bytes and errors per topic and principal.
//! 9. [`fault`]: fault injection (chaos), off unless configured. After traffic, so that
//!    traffic counts the responses as the faults left them: what clients were told.
//! 10. [`shadow`]: accepted writes to shadowed topics copied to their shadow topics. After
//!     fault, so that it sees only writes that reached the broker, and the broker's answer
//!     before a fault changes it.
//! 11. [`canary`]: a share of a topic's partitions written to a canary topic instead. After
//!     shadow, whose copies of a split topic's writes include the canary's; before addresses,
//!     which must see the answer the client gets.
//! 12. [`addresses`]: broker addresses rewritten to the sidecar's, ApiVersions narrowed.

pub(crate) mod addresses;
pub(crate) mod alias;
pub(crate) mod authz;
pub(crate) mod canary;
pub(crate) mod fault;
pub mod fetch_sessions;
pub(crate) mod quota;
pub(crate) mod safeguard;
pub(crate) mod sasl;
pub(crate) mod shadow;
pub(crate) mod topic_limits;
pub(crate) mod traffic;
