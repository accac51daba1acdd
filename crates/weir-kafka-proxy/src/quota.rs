//! Quotas with Kafka's semantics (KIP-13, KIP-124, KIP-219): what a principal may produce and
//! fetch per second, and what share of the sidecar's time its requests may take, accounted
//! across all its connections to this sidecar.
//!
//! A quota never refuses: a client over its rate is told to wait (`throttle_time_ms` in the
//! response) and the sidecar reads nothing more from that connection meanwhile, as a broker
//! does. Well-behaved clients (librdkafka, the Java client) slow down without an error.
//!
//! The meter is a token bucket with debt: credit refills at the quota's rate up to one
//! second's worth; each request takes its bytes, and a bucket in debt answers with the time
//! the debt takes to repay. Over any long run a client that waits as told moves exactly the
//! quota's rate. The meters live in one [`QuotaMeters`] per sidecar, keyed by rule and
//! principal (and client id when the rule says so), so opening more connections does not
//! escape the quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};

/// The longest a client is told to wait at once. Kafka's own cap is its quota window (11 s
/// by default); a wait longer than a client's request timeout would turn into errors.
pub const MAX_THROTTLE: Duration = Duration::from_secs(10);

/// How many meters a sidecar keeps apart; past it, new clients share one per rule.
const MAX_METERS: usize = 10_000;
/// The principal of the shared meter past the bound.
const OTHER: &str = "(other)";

/// The largest `request_percentage`: all of 64 threads (Kafka too allows more than 100, up to
/// its threads' count times 100).
const MAX_REQUEST_PERCENTAGE: f64 = 6_400.0;

/// The principal that stands for a client no authentication named.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// One quota rule of the sidecar's config (`quotas:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRule {
    /// Its name, in metrics and logs.
    pub name: String,
    /// Whom it limits: principals as authorization names them, `*` for every principal
    /// (each its own quota, as Kafka's default user quota). `ANONYMOUS` is a client no
    /// authentication named.
    pub principals: Vec<String>,
    /// Only clients with one of these client ids (`*` or absent: any).
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Who shares one quota: `principal` (all its connections and client ids, the default)
    /// or `principal_and_client_id`.
    #[serde(default)]
    pub per: QuotaScope,
    /// Record batches produced, bytes per second (the request's size, as Kafka counts).
    #[serde(default)]
    pub produce_bytes_per_second: Option<f64>,
    /// Fetched, bytes per second (the response's size).
    #[serde(default)]
    pub fetch_bytes_per_second: Option<f64>,
    /// The share of one sidecar thread's time its requests may take, in percent (Kafka's
    /// `request_percentage`, KIP-124, with the sidecar's time for the broker threads'): the
    /// time each request and its response spend inside the sidecar, as
    /// `weir_kafka_proxy_latency_seconds` measures it. Every api counts.
    #[serde(default)]
    pub request_percentage: Option<f64>,
    /// Connections open at once, per principal; one more is closed as it opens.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// New connections per second, per principal; one past the rate is served late (as
    /// Kafka's connection creation quota, KIP-612, delays it).
    #[serde(default)]
    pub connections_per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    #[default]
    Principal,
    PrincipalAndClientId,
}

/// What a quota meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metered {
    Produce,
    Fetch,
    /// Time inside the sidecar, in microseconds.
    Request,
    /// New connections (one unit each).
    ConnectionRate,
}

impl Metered {
    pub fn as_str(self) -> &'static str {
        match self {
            Metered::Produce => "produce",
            Metered::Fetch => "fetch",
            Metered::Request => "request",
            Metered::ConnectionRate => "connection_rate",
        }
    }
}

impl QuotaRule {
    pub fn validate(&self, origin: &std::path::Path, at: &str) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(invalid(origin, &format!("{at}.name"), "a quota needs a name"));
        }
        if self.principals.is_empty() {
            return Err(invalid(origin, &format!("{at}.principals"), "name at least one principal, or `*`"));
        }
        for (field, rate) in [
            ("produce_bytes_per_second", self.produce_bytes_per_second),
            ("fetch_bytes_per_second", self.fetch_bytes_per_second),
        ] {
            if let Some(rate) = rate {
                if !rate.is_finite() || rate < 1.0 {
                    return Err(invalid(
                        origin,
                        &format!("{at}.{field}"),
                        format!("expected a rate of at least 1 byte per second, not {rate}"),
                    ));
                }
            }
        }
        if let Some(share) = self.request_percentage {
            if !share.is_finite() || share <= 0.0 || share > MAX_REQUEST_PERCENTAGE {
                let why = format!(
                    "expected a share of one thread's time above 0 and at most {MAX_REQUEST_PERCENTAGE} percent, not {share}"
                );
                return Err(invalid(origin, &format!("{at}.request_percentage"), why));
            }
        }
        if let Some(rate) = self.connections_per_second {
            if !rate.is_finite() || rate <= 0.0 {
                let why = format!("expected a rate above 0 connections per second, not {rate}");
                return Err(invalid(origin, &format!("{at}.connections_per_second"), why));
            }
        }
        if self.max_connections == Some(0) {
            return Err(invalid(origin, &format!("{at}.max_connections"), "must be at least 1"));
        }
        if self.produce_bytes_per_second.is_none()
            && self.fetch_bytes_per_second.is_none()
            && self.request_percentage.is_none()
            && self.max_connections.is_none()
            && self.connections_per_second.is_none()
        {
            let why = format!(
                "quota `{}` limits nothing: set produce_bytes_per_second, fetch_bytes_per_second, request_percentage, max_connections or connections_per_second",
                self.name
            );
            return Err(invalid(origin, at, why));
        }
        Ok(())
    }

    fn rate(&self, metered: Metered) -> Option<f64> {
        match metered {
            Metered::Produce => self.produce_bytes_per_second,
            Metered::Fetch => self.fetch_bytes_per_second,
            // Metered in microseconds: one percent is 10 ms per second.
            Metered::Request => self.request_percentage.map(|share| share * 10_000.0),
            Metered::ConnectionRate => self.connections_per_second,
        }
    }

    /// Whether the rule covers this client.
    pub fn applies_to(&self, principal: &str, client_id: &str) -> bool {
        !self.principals.is_empty() && covers(&self.principals, principal) && covers(&self.client_ids, client_id)
    }
}

/// Whether a rule's list of names covers `name`: it is empty, holds `*`, or holds `name`.
pub(crate) fn covers(list: &[String], name: &str) -> bool {
    list.is_empty() || list.iter().any(|p| p == "*" || p == name)
}

/// One bucket: credit in bytes, refilled at `rate` up to one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    credit: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        Self { rate, credit: rate, at: now }
    }

    /// Takes `bytes`; the wait that repays the debt, if in debt.
    fn take(&mut self, bytes: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.credit = (self.credit + elapsed * self.rate).min(self.rate);
        self.credit -= bytes as f64;
        // Debt beyond the longest wait is forgiven, so one huge request cannot stall a client
        // for longer than its timeouts.
        self.credit = self.credit.max(-self.rate * MAX_THROTTLE.as_secs_f64());
        if self.credit >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.credit / self.rate)
        }
    }
}

/// Who a meter is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MeterKey {
    rule: Arc<str>,
    metered: Metered,
    principal: Arc<str>,
    client_id: Option<Arc<str>>,
}

/// Every quota meter of a sidecar, shared by its connections.
#[derive(Debug, Default)]
pub struct QuotaMeters {
    buckets: Mutex<HashMap<MeterKey, Bucket>>,
    /// Connections open per (rule, principal), under rules with `max_connections`.
    open: Mutex<HashMap<RuleAndPrincipal, u32>>,
}

/// A `max_connections` rule's name and a principal it counts.
type RuleAndPrincipal = (Arc<str>, Arc<str>);

/// A connection counted against `max_connections` rules: uncounted when dropped.
#[derive(Debug)]
pub struct CountedConnection {
    meters: Arc<QuotaMeters>,
    keys: Vec<RuleAndPrincipal>,
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut open = self.meters.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

/// A connection one `max_connections` rule does not admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyConnections {
    pub rule: Arc<str>,
    pub max: u32,
}

/// The meters one client (principal, client id) is under, for one kind of traffic.
#[derive(Debug, Clone, Default)]
pub struct ClientQuotas {
    keys: Vec<(MeterKey, f64)>,
}

impl ClientQuotas {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The rules (by name) that apply.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(key, _)| &*key.rule)
    }
}

impl QuotaMeters {
    /// The meters of `rules` that cover this client for `metered` traffic.
    pub fn for_client(rules: &[QuotaRule], metered: Metered, principal: &str, client_id: &str) -> ClientQuotas {
        let keys = rules
            .iter()
            .filter(|rule| rule.applies_to(principal, client_id))
            .filter_map(|rule| {
                let rate = rule.rate(metered)?;
                let client_id = (rule.per == QuotaScope::PrincipalAndClientId).then(|| Arc::from(client_id));
                let key = MeterKey {
                    rule: Arc::from(rule.name.as_str()),
                    metered,
                    principal: Arc::from(principal),
                    client_id,
                };
                Some((key, rate))
            })
            .collect();
        ClientQuotas { keys }
    }

    /// Accounts `bytes` to every meter of `quotas`; the longest wait any of them asks for,
    /// and the rule that asks it.
    pub fn record(&self, quotas: &ClientQuotas, bytes: usize, now: Instant) -> (Duration, Option<Arc<str>>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut wait, mut by) = (Duration::ZERO, None);
        for (key, rate) in &quotas.keys {
            // Client ids are the client's to choose: past the bound, new ones share one meter
            // per rule, so that inventing them cannot grow the table.
            let key = if buckets.len() >= MAX_METERS && !buckets.contains_key(key) {
                MeterKey { principal: Arc::from(OTHER), client_id: None, ..key.clone() }
            } else {
                key.clone()
            };
            let rule = key.rule.clone();
            let bucket = buckets.entry(key).or_insert_with(|| Bucket::new(*rate, now));
            // A changed rule keeps its bucket's state at the new rate.
            bucket.rate = *rate;
            let asked = bucket.take(bytes, now);
            if asked > wait {
                (wait, by) = (asked, Some(rule));
            }
        }
        (wait.min(MAX_THROTTLE), by)
    }

    /// Counts a new connection of `principal` against the `max_connections` rules that cover
    /// it (connection limits are per principal: its client id is not known yet).
    pub fn admit_connection(
        self: &Arc<Self>,
        rules: &[QuotaRule],
        principal: &str,
    ) -> Result<CountedConnection, TooManyConnections> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let limits: Vec<(RuleAndPrincipal, u32)> = rules
            .iter()
            .filter(|rule| {
                !rule.principals.is_empty() && covers(&rule.principals, principal) && covers(&rule.client_ids, "")
            })
            .filter_map(|rule| Some(((Arc::from(rule.name.as_str()), Arc::from(principal)), rule.max_connections?)))
            .collect();
        if let Some(((rule, _), max)) = limits.iter().find(|(key, max)| open.get(key).is_some_and(|n| n >= max)) {
            return Err(TooManyConnections { rule: rule.clone(), max: *max });
        }
        for (key, _) in &limits {
            *open.entry(key.clone()).or_default() += 1;
        }
        Ok(CountedConnection { meters: self.clone(), keys: limits.into_iter().map(|(key, _)| key).collect() })
    }

    /// Forgets the meters of rules no longer configured.
    pub fn retain_rules(&self, rules: &[QuotaRule]) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.retain(|key, _| rules.iter().any(|rule| *rule.name == *key.rule));
    }

    /// How many meters are kept (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(produce: f64) -> QuotaRule {
        QuotaRule {
            name: "orders".into(),
            principals: vec!["User:orders".into()],
            client_ids: vec![],
            per: QuotaScope::Principal,
            produce_bytes_per_second: Some(produce),
            fetch_bytes_per_second: None,
            request_percentage: None,
            max_connections: None,
            connections_per_second: None,
        }
    }

    #[test]
    fn a_client_that_waits_as_told_moves_the_quota_rate() {
        let meters = QuotaMeters::default();
        let rules = [rule(1_000_000.0)];
        let quotas = QuotaMeters::for_client(&rules, Metered::Produce, "User:orders", "app");
        let start = Instant::now();
        let mut now = start;
        let mut sent = 0;
        // 64 KiB batches, each sent as soon as the previous wait is over.
        while now < start + Duration::from_secs(30) {
            let (wait, _) = meters.record(&quotas, 65_536, now);
            sent += 65_536;
            now += wait + Duration::from_millis(1);
        }
        let rate = sent as f64 / now.duration_since(start).as_secs_f64();
        assert!((rate / 1_000_000.0 - 1.0).abs() < 0.05, "rate {rate}");
    }

    #[test]
    fn connections_of_one_principal_share_a_meter_and_others_are_not_slowed() {
        let meters = QuotaMeters::default();
        let rules = [rule(100_000.0)];
        let now = Instant::now();
        let first = QuotaMeters::for_client(&rules, Metered::Produce, "User:orders", "a");
        let second = QuotaMeters::for_client(&rules, Metered::Produce, "User:orders", "b");
        assert_eq!(meters.record(&first, 100_000, now), (Duration::ZERO, None), "one second of credit to start");
        assert_eq!(
            meters.record(&second, 50_000, now),
            (Duration::from_millis(500), Some(Arc::from("orders"))),
            "the same bucket"
        );
        let other = QuotaMeters::for_client(&rules, Metered::Produce, "User:billing", "a");
        assert!(other.is_empty());
        assert_eq!(meters.record(&other, 10_000_000, now).0, Duration::ZERO);
        assert!(QuotaMeters::for_client(&rules, Metered::Fetch, "User:orders", "a").is_empty(), "fetch is not limited");
    }

    #[test]
    fn per_client_id_rules_meter_each_client_id_and_waits_are_capped() {
        let meters = QuotaMeters::default();
        let mut per_client = rule(1_000.0);
        per_client.per = QuotaScope::PrincipalAndClientId;
        per_client.principals = vec!["*".into()];
        let rules = [per_client];
        let now = Instant::now();
        let a = QuotaMeters::for_client(&rules, Metered::Produce, "User:x", "a");
        let b = QuotaMeters::for_client(&rules, Metered::Produce, "User:x", "b");
        assert_eq!(meters.record(&a, 1_000_000, now).0, MAX_THROTTLE);
        assert_eq!(meters.record(&b, 1_000, now).0, Duration::ZERO);
        assert_eq!(meters.len(), 2);
        for n in 0..MAX_METERS + 10 {
            let invented = QuotaMeters::for_client(&rules, Metered::Produce, "User:x", &format!("c{n}"));
            meters.record(&invented, 1, now);
        }
        assert_eq!(meters.len(), MAX_METERS + 1, "invented client ids share one meter past the bound");
        meters.retain_rules(&[]);
        assert!(meters.is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let origin = std::path::Path::new("sidecar.yaml");
        let negative = rule(-1.0).validate(origin, "quotas[0]").unwrap_err().to_string();
        assert!(negative.contains("quotas[0].produce_bytes_per_second"), "{negative}");
        let mut nothing = rule(1.0);
        nothing.produce_bytes_per_second = None;
        let nothing = nothing.validate(origin, "quotas[1]").unwrap_err().to_string();
        assert!(nothing.contains("limits nothing"), "{nothing}");
    }

    #[test]
    fn a_principal_gets_at_most_its_connections_and_a_closed_one_frees_its_place() {
        let meters = Arc::new(QuotaMeters::default());
        let rules = [QuotaRule { max_connections: Some(2), produce_bytes_per_second: None, ..rule(1.0) }];
        let first = meters.admit_connection(&rules, "User:orders").unwrap();
        let _second = meters.admit_connection(&rules, "User:orders").unwrap();
        let over = meters.admit_connection(&rules, "User:orders").unwrap_err();
        assert_eq!(over, TooManyConnections { rule: Arc::from("orders"), max: 2 });
        assert!(meters.admit_connection(&rules, "User:other").is_ok(), "the rule names one principal");
        drop(first);
        assert!(meters.admit_connection(&rules, "User:orders").is_ok());
    }

    #[test]
    fn a_request_share_is_time_per_second_and_bad_shares_are_refused() {
        let meters = QuotaMeters::default();
        let rules = [QuotaRule { request_percentage: Some(5.0), produce_bytes_per_second: None, ..rule(1.0) }];
        let quotas = QuotaMeters::for_client(&rules, Metered::Request, "User:orders", "app");
        let start = Instant::now();
        let mut now = start;
        let mut used = Duration::ZERO;
        // 2 ms of sidecar time per request, each sent as soon as the previous wait is over.
        while now < start + Duration::from_secs(30) {
            let (wait, _) = meters.record(&quotas, 2_000, now);
            used += Duration::from_millis(2);
            now += wait + Duration::from_millis(2);
        }
        let share = used.as_secs_f64() / now.duration_since(start).as_secs_f64();
        assert!((share / 0.05 - 1.0).abs() < 0.05, "share {share}");
        let origin = std::path::Path::new("sidecar.yaml");
        for bad in [0.0, -1.0, f64::NAN, 6_401.0] {
            let rule = QuotaRule { request_percentage: Some(bad), ..rule(1.0) };
            let err = rule.validate(origin, "quotas[0]").unwrap_err().to_string();
            assert!(err.contains("quotas[0].request_percentage"), "{err}");
        }
    }

    #[test]
    fn new_connections_past_their_rate_are_told_to_wait() {
        let meters = QuotaMeters::default();
        let rules = [QuotaRule { connections_per_second: Some(2.0), produce_bytes_per_second: None, ..rule(1.0) }];
        let rate = QuotaMeters::for_client(&rules, Metered::ConnectionRate, "User:orders", "");
        let now = Instant::now();
        assert_eq!(meters.record(&rate, 1, now).0, Duration::ZERO);
        assert_eq!(meters.record(&rate, 1, now).0, Duration::ZERO, "one second of credit: two connections");
        assert_eq!(meters.record(&rate, 1, now).0, Duration::from_millis(500));
    }
}
