//! The filters of the Kafka sidecar, each one policy in one file, and the chain they make for
//! a connection.
//!
//! Chain order (requests pass it forwards, responses backwards):
//!
//! 1. [`sasl`]: SASL terminated at the sidecar; until a client authenticated nothing of it
//!    reaches a broker.
//! 2. [`fetch_sessions`]: a fetch session serves only the principal that opened it.
//! 3. [`authz`]: topic-level authorization, with partial answers.
//! 4. [`traffic`]: records, bytes and errors per topic and principal.
//! 5. [`addresses`]: broker addresses rewritten to the sidecar's, ApiVersions narrowed.

pub(crate) mod addresses;
pub(crate) mod authz;
pub mod fetch_sessions;
pub(crate) mod sasl;
pub(crate) mod traffic;

use crate::filter::{ConnectionInfo, Filter};
use crate::shared::Shared;
use crate::snapshot::Snapshot;

/// The filters one connection runs, as configured.
///
/// SASL is set up when the connection opens (from the snapshot of that moment). Authorization
/// is always in the chain, passing everything while the snapshot holds no policy, so that a
/// policy published later applies to connections already open.
pub(crate) fn for_connection(
    shared: &Shared,
    snapshot: &Snapshot,
    connection: &ConnectionInfo,
) -> Vec<Box<dyn Filter>> {
    let mut chain: Vec<Box<dyn Filter>> = Vec::with_capacity(5);
    if let Some(server) = &snapshot.sasl {
        chain.push(Box::new(sasl::SaslFilter::new(server.clone(), connection.peer)));
    }
    chain.push(Box::new(fetch_sessions::FetchSessionFilter::new(shared.fetch_sessions.clone())));
    let (policy, principal) = (snapshot.policy.clone(), connection.principal.as_deref());
    chain.push(Box::new(authz::ConnectionAuthz::new(policy, principal, connection.peer, &connection.listener)));
    let summarize = shared.config.audit.as_ref().is_some_and(|audit| audit.connection_summaries);
    chain.push(Box::new(traffic::TrafficFilter::new(connection, summarize)));
    chain.push(Box::new(addresses::AddressFilter::new(shared.directory.clone())));
    chain
}
