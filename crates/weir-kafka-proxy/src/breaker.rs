//! Circuit breaking per broker: at most so many connections of the sidecar's clients to one
//! broker (past it a client's connection waits for one to close under `queue`, or is closed at
//! once under `reject`, and the client reconnects), and at most so many requests of all the
//! sidecar's clients in flight to one broker. Past the limit a request waits for a slot (`queue`, the default, as a
//! broker at its `queued.max.requests` stops reading), or a produce is failed at once with a
//! retriable REQUEST_TIMED_OUT and nothing written (`reject`), so that producers retry rather
//! than pile up; other requests wait in either mode. A broker that does not answer within
//! `request_timeout_ms` (beyond what the request lets it wait) has the client's connection
//! closed, so that the client retries, after refreshing its metadata, instead of waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// `upstream.circuit_breaker` in the sidecar's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Requests in flight to one broker, across all clients; absent: no limit.
    #[serde(default)]
    pub max_requests_per_broker: Option<usize>,
    /// Connections to one broker on behalf of clients; absent: no limit.
    #[serde(default)]
    pub max_connections_per_broker: Option<usize>,
    #[serde(default)]
    pub when_full: WhenFull,
    /// How long a broker may take to answer, beyond what the request lets it wait by design
    /// ([`answer_may_wait`]); past it the client's connection is closed. Absent: no limit.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
}

/// How long a broker may hold the answer to a request by design, on top of its work: a
/// Fetch its `max_wait_ms`, a Produce its `timeout_ms` (for replication). None for the
/// requests no request timeout applies to: those that wait for a group to rebalance
/// (JoinGroup, SyncGroup), long-poll in ways not read here (ShareFetch), or carry an admin
/// operation's own timeout (CreateTopics, DeleteTopics, ...).
pub fn answer_may_wait(api: ApiKey, version: i16, body: &[u8]) -> Option<Duration> {
    let ms = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    match api {
        ApiKey::Fetch => weir_wire::fetch::request_max_wait_ms(body, version).map(ms),
        ApiKey::Produce => weir_wire::produce::acks_and_timeout_ms(body, version).ok().map(|(_, timeout)| ms(timeout)),
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::ShareFetch
        | ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::CreatePartitions
        | ApiKey::DeleteRecords
        | ApiKey::ElectLeaders
        | ApiKey::AlterPartitionReassignments => None,
        _ => Some(Duration::ZERO),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Queue,
    Reject,
}

impl CircuitBreaker {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.request_timeout_ms == Some(0) {
            return Err(("request_timeout_ms", "must be at least 1".into()));
        }
        for (field, limit) in [
            ("max_requests_per_broker", self.max_requests_per_broker),
            ("max_connections_per_broker", self.max_connections_per_broker),
        ] {
            match limit {
                Some(0) => return Err((field, "must be at least 1".into())),
                Some(n) if n > Semaphore::MAX_PERMITS => return Err((field, format!("{n} is too many"))),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A broker's requests in flight, as the admin endpoint shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InFlightState {
    pub address: String,
    pub requests: usize,
    pub limit: usize,
}

/// The request slots of every broker, keyed by address.
#[derive(Debug, Default)]
pub struct BrokerSlots {
    config: CircuitBreaker,
    brokers: Mutex<HashMap<String, Arc<Semaphore>>>,
    connections: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl BrokerSlots {
    pub fn new(config: CircuitBreaker) -> Self {
        Self { config, brokers: Mutex::default(), connections: Mutex::default() }
    }

    pub fn when_full(&self) -> WhenFull {
        self.config.when_full
    }

    /// The slots of the broker at `address`; none without a limit.
    pub fn of(&self, address: &str) -> Option<Arc<Semaphore>> {
        let limit = self.config.max_requests_per_broker?;
        let mut brokers = self.brokers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(brokers.entry(address.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone())
    }

    /// The connection slots of the broker at `address`, and their number; none without a
    /// limit.
    pub fn connections_of(&self, address: &str) -> Option<(Arc<Semaphore>, usize)> {
        let limit = self.config.max_connections_per_broker?;
        let mut brokers = self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some((brokers.entry(address.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone(), limit))
    }

    pub fn states(&self) -> Vec<InFlightState> {
        let Some(limit) = self.config.max_requests_per_broker else { return Vec::new() };
        let brokers = self.brokers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut states: Vec<InFlightState> = brokers
            .iter()
            .map(|(address, slots)| InFlightState {
                address: address.clone(),
                requests: limit - slots.available_permits(),
                limit,
            })
            .collect();
        states.sort_by(|a, b| a.address.cmp(&b.address));
        states
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::SidecarConfig;

    #[test]
    fn a_brokers_slots_are_shared_by_its_connections_and_counted_in_flight() {
        let config =
            CircuitBreaker { max_requests_per_broker: Some(2), when_full: WhenFull::Reject, ..Default::default() };
        let slots = BrokerSlots::new(config);
        let (a, b) = (slots.of("b1:9092").unwrap(), slots.of("b1:9092").unwrap());
        let _held = a.clone().try_acquire_owned().unwrap();
        let _also = b.clone().try_acquire_owned().unwrap();
        assert!(a.try_acquire().is_err(), "two connections of one broker share its two slots");
        assert!(slots.of("b2:9092").unwrap().try_acquire().is_ok(), "another broker has its own");
        let states = slots.states();
        assert_eq!(states[0], InFlightState { address: "b1:9092".into(), requests: 2, limit: 2 });
        assert!(BrokerSlots::default().of("b1:9092").is_none(), "no limit, no slots");
    }

    #[test]
    fn what_a_request_lets_its_broker_wait_is_added_and_rebalances_are_not_timed() {
        use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest};
        use kafka_protocol::protocol::Encodable;
        fn body<T: Encodable>(message: &T, version: i16) -> Vec<u8> {
            let mut out = bytes::BytesMut::new();
            message.encode(&mut out, version).unwrap();
            out.to_vec()
        }
        let fetch = body(&FetchRequest::default().with_max_wait_ms(500), 12);
        assert_eq!(answer_may_wait(ApiKey::Fetch, 12, &fetch), Some(Duration::from_millis(500)));
        let produce = body(&ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000), 9);
        assert_eq!(answer_may_wait(ApiKey::Produce, 9, &produce), Some(Duration::from_secs(30)));
        assert_eq!(answer_may_wait(ApiKey::Metadata, 12, &body(&MetadataRequest::default(), 12)), Some(Duration::ZERO));
        assert_eq!(answer_may_wait(ApiKey::JoinGroup, 9, &[]), None);
    }

    #[test]
    fn a_limit_of_zero_is_refused_with_its_field() {
        let yaml = "listen: 127.0.0.1:1\nbootstrap: [b:1]\nupstream: {circuit_breaker: {max_requests_per_broker: 0}}";
        let config: SidecarConfig = weir_core::config::parse_yaml(yaml, Path::new("t")).unwrap();
        let err = config.validate(Path::new("t")).unwrap_err().to_string();
        assert!(err.contains("upstream.circuit_breaker.max_requests_per_broker"), "{err}");
    }
}
