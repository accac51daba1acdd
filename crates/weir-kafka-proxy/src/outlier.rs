//! Outlier detection for brokers: a broker the sidecar failed to connect to several times in a
//! row is ejected for a while, so that clients are told at once (their connection closed,
//! which makes them refresh metadata and try again) instead of each waiting out a connect
//! timeout.
//!
//! Only failures to reach the broker count (refused, timed out); TLS and SASL failures are
//! configuration, not outliers. An ejection lasts `base_ejection_ms`, doubling with each
//! ejection in a row up to `max_ejection_ms`. When it ends, the next connection is a probe:
//! success forgets the broker's history, failure ejects it again for twice as long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `upstream.outlier_detection` in the sidecar's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Failed connects in a row that eject a broker; 0 turns detection off.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// The first ejection's length.
    #[serde(default = "defaults::base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// The longest an ejection lasts.
    #[serde(default = "defaults::max_ejection_ms")]
    pub max_ejection_ms: u64,
}

mod defaults {
    pub fn consecutive_failures() -> u32 {
        5
    }
    pub fn base_ejection_ms() -> u64 {
        1_000
    }
    pub fn max_ejection_ms() -> u64 {
        10_000
    }
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: defaults::consecutive_failures(),
            base_ejection_ms: defaults::base_ejection_ms(),
            max_ejection_ms: defaults::max_ejection_ms(),
        }
    }
}

impl OutlierDetection {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.base_ejection_ms == 0 {
            return Err(("base_ejection_ms", "must be at least 1".into()));
        }
        if self.max_ejection_ms < self.base_ejection_ms {
            return Err(("max_ejection_ms", format!("{} is below base_ejection_ms", self.max_ejection_ms)));
        }
        Ok(())
    }

    fn ejection(&self, ejections_in_a_row: u32) -> Duration {
        let doubled = self.base_ejection_ms.saturating_mul(1u64 << ejections_in_a_row.min(32));
        Duration::from_millis(doubled.min(self.max_ejection_ms))
    }
}

#[derive(Debug, Default)]
struct Health {
    failures_in_a_row: u32,
    ejections_in_a_row: u32,
    ejected_until: Option<Instant>,
}

/// One broker's state, as the admin endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerState {
    pub address: String,
    pub failures_in_a_row: u32,
    /// How much longer it stays ejected; 0 when it is not.
    pub ejected_for_ms: u64,
    pub ejections_in_a_row: u32,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted,
    /// The broker is ejected for this long.
    Ejected(Duration),
}

/// The health of every broker the sidecar connects to, keyed by address.
#[derive(Debug, Default)]
pub struct Outliers {
    config: OutlierDetection,
    brokers: Mutex<HashMap<String, Health>>,
}

impl Outliers {
    pub fn new(config: OutlierDetection) -> Self {
        Self { config, brokers: Mutex::default() }
    }

    fn brokers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.brokers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How much longer `address` stays ejected, if it is.
    pub fn ejected(&self, address: &str, now: Instant) -> Option<Duration> {
        let brokers = self.brokers();
        let until = brokers.get(address)?.ejected_until?;
        until.checked_duration_since(now).filter(|left| !left.is_zero())
    }

    /// A connect to `address` failed.
    pub fn failed(&self, address: &str, now: Instant) -> Failure {
        if self.config.consecutive_failures == 0 {
            return Failure::Counted;
        }
        let mut brokers = self.brokers();
        let health = brokers.entry(address.to_owned()).or_default();
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        if health.failures_in_a_row < self.config.consecutive_failures {
            return Failure::Counted;
        }
        let ejection = self.config.ejection(health.ejections_in_a_row);
        health.ejections_in_a_row = health.ejections_in_a_row.saturating_add(1);
        health.ejected_until = Some(now + ejection);
        Failure::Ejected(ejection)
    }

    /// A connect to `address` succeeded: its history is forgotten. Whether it had failed.
    pub fn succeeded(&self, address: &str) -> bool {
        let mut brokers = self.brokers();
        brokers.remove(address).is_some()
    }

    /// Every broker with failures on record.
    pub fn states(&self, now: Instant) -> Vec<BrokerState> {
        let mut states: Vec<BrokerState> = self
            .brokers()
            .iter()
            .map(|(address, health)| BrokerState {
                address: address.clone(),
                failures_in_a_row: health.failures_in_a_row,
                ejected_for_ms: health
                    .ejected_until
                    .and_then(|until| until.checked_duration_since(now))
                    .map_or(0, |left| left.as_millis() as u64),
                ejections_in_a_row: health.ejections_in_a_row,
            })
            .collect();
        states.sort_by(|a, b| a.address.cmp(&b.address));
        states
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outliers() -> Outliers {
        Outliers::new(OutlierDetection { consecutive_failures: 3, base_ejection_ms: 1000, max_ejection_ms: 3000 })
    }

    #[test]
    fn failures_in_a_row_eject_for_a_doubling_time_and_a_success_forgets_them() {
        let (o, t0) = (outliers(), Instant::now());
        assert_eq!(o.failed("b:1", t0), Failure::Counted);
        assert_eq!(o.failed("b:1", t0), Failure::Counted);
        assert_eq!(o.ejected("b:1", t0), None);
        assert_eq!(o.failed("b:1", t0), Failure::Ejected(Duration::from_secs(1)));
        assert_eq!(o.ejected("b:1", t0 + Duration::from_millis(400)), Some(Duration::from_millis(600)));
        assert_eq!(o.ejected("other:1", t0), None);
        // The probe after the ejection fails: twice as long, then capped.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(o.ejected("b:1", t1), None);
        assert_eq!(o.failed("b:1", t1), Failure::Ejected(Duration::from_secs(2)));
        assert_eq!(o.failed("b:1", t1), Failure::Ejected(Duration::from_secs(3)));
        assert_eq!(o.states(t1)[0].ejections_in_a_row, 3);
        assert!(o.succeeded("b:1"));
        assert_eq!(o.ejected("b:1", t1), None);
        assert!(o.states(t1).is_empty());
        assert_eq!(o.failed("b:1", t1), Failure::Counted, "history forgotten");
    }

    #[test]
    fn zero_failures_turns_detection_off_and_bad_lengths_are_refused() {
        let off = Outliers::new(OutlierDetection { consecutive_failures: 0, ..OutlierDetection::default() });
        for _ in 0..100 {
            assert_eq!(off.failed("b:1", Instant::now()), Failure::Counted);
        }
        let bad = OutlierDetection { base_ejection_ms: 500, max_ejection_ms: 100, ..OutlierDetection::default() };
        assert_eq!(bad.validate().unwrap_err().0, "max_ejection_ms");
    }
}
