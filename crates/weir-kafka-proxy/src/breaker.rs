//! Circuit breaking per broker: at most so many requests of all the sidecar's clients in
//! flight to one broker. Past the limit a request waits for a slot (`queue`, the default, as a
//! broker at its `queued.max.requests` stops reading), or a produce is failed at once with a
//! retriable REQUEST_TIMED_OUT and nothing written (`reject`), so that producers retry rather
//! than pile up; other requests wait in either mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// `upstream.circuit_breaker` in the sidecar's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Requests in flight to one broker, across all clients; absent: no limit.
    #[serde(default)]
    pub max_requests_per_broker: Option<usize>,
    #[serde(default)]
    pub when_full: WhenFull,
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
        match self.max_requests_per_broker {
            Some(0) => Err(("max_requests_per_broker", "must be at least 1".into())),
            Some(n) if n > Semaphore::MAX_PERMITS => Err(("max_requests_per_broker", format!("{n} is too many"))),
            _ => Ok(()),
        }
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
}

impl BrokerSlots {
    pub fn new(config: CircuitBreaker) -> Self {
        Self { config, brokers: Mutex::default() }
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
        let slots = BrokerSlots::new(CircuitBreaker { max_requests_per_broker: Some(2), when_full: WhenFull::Reject });
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
    fn a_limit_of_zero_is_refused_with_its_field() {
        let yaml = "listen: 127.0.0.1:1\nbootstrap: [b:1]\nupstream: {circuit_breaker: {max_requests_per_broker: 0}}";
        let config: SidecarConfig = weir_core::config::parse_yaml(yaml, Path::new("t")).unwrap();
        let err = config.validate(Path::new("t")).unwrap_err().to_string();
        assert!(err.contains("upstream.circuit_breaker.max_requests_per_broker"), "{err}");
    }
}
