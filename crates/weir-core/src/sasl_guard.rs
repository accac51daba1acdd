//! Keeps password guessing from costing honest clients (issue 8, item 5).
//!
//! A PLAIN password check runs PBKDF2 (thousands of HMAC rounds); done inline on the async
//! workers, 40 guessing connections kept a core busy and made every other login wait. Three
//! things bound that:
//!
//! - [`PasswordChecks`]: the derivation runs on blocking threads, at most `concurrency` at
//!   once, so the async workers keep serving traffic whatever the guessing rate.
//! - [`SuccessCache`]: a PLAIN password that verified recently verifies again without the
//!   derivation (looked up by a keyed hash, never the password), so a client that logged in
//!   before keeps logging in cheaply, and is not refused by a spent user budget.
//! - [`FailureBudgets`]: failed authentications per source address and per user name in a
//!   window; once a budget is spent, attempts are refused at once, without any derivation.
//!   An attempt is charged *before* its check and refunded if it succeeds, so concurrent
//!   guesses cannot overdraw a budget.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;
use serde::Deserialize;
use tokio::sync::Semaphore;

/// `sasl.failure_budget`: how many failed authentications a source address or a user name may
/// have in a window before further attempts are refused unchecked. 0: unlimited.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FailureBudgetConfig {
    /// Failures per client address (IPv6: per /64, what one host usually gets).
    #[serde(default = "default_budget")]
    pub per_source: u32,
    /// Failures per user name that exists in the credentials file (unknown names are counted
    /// per source only, so guessed names cannot fill the table).
    #[serde(default = "default_budget")]
    pub per_user: u32,
    /// The window failures are counted in; a spent budget is whole again when it ends.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

fn default_budget() -> u32 {
    20
}

fn default_window_ms() -> u64 {
    60_000
}

impl Default for FailureBudgetConfig {
    fn default() -> Self {
        Self { per_source: default_budget(), per_user: default_budget(), window_ms: default_window_ms() }
    }
}

/// `sasl.password_cache`: successful PLAIN checks remembered.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PasswordCacheConfig {
    /// How long an entry lives after its last use.
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
    /// At most this many entries (the least recently used goes first); 0 disables the cache.
    #[serde(default = "default_cache_entries")]
    pub entries: usize,
}

fn default_cache_ttl_ms() -> u64 {
    300_000
}

fn default_cache_entries() -> usize {
    10_000
}

impl Default for PasswordCacheConfig {
    fn default() -> Self {
        Self { ttl_ms: default_cache_ttl_ms(), entries: default_cache_entries() }
    }
}

/// Source addresses tracked at most; beyond that the oldest window is forgotten (which can
/// only make a budget more lenient, never lock anyone out).
const MAX_TRACKED_SOURCES: usize = 65_536;

/// The client address failures are counted for: an IPv4 address (IPv4-mapped IPv6 included),
/// or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Which budget refused an attempt; the text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("too many failed authentications from {from}; retry after {retry_after_s} s")]
    Source { from: Source, retry_after_s: u64 },
    #[error("too many failed authentications for user `{user}`; retry after {retry_after_s} s")]
    User { user: String, retry_after_s: u64 },
}

impl Throttled {
    /// The metric label: `source` or `user`.
    pub fn by(&self) -> &'static str {
        match self {
            Self::Source { .. } => "source",
            Self::User { .. } => "user",
        }
    }
}

/// Failures in the current fixed window of one key.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// An attempt charged to its budgets: kept (the attempt failed) or [`FailureBudgets::refund`]ed.
#[derive(Debug)]
#[must_use = "refund the ticket when the attempt succeeds"]
pub struct Ticket {
    source: Source,
    user: Option<String>,
}

/// Failure counts per source and per (known) user, in fixed windows.
pub struct FailureBudgets {
    config: FailureBudgetConfig,
    window: Duration,
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    sources: HashMap<Source, Window>,
    users: HashMap<String, Window>,
}

impl FailureBudgets {
    pub fn new(config: FailureBudgetConfig) -> Self {
        Self { config, window: Duration::from_millis(config.window_ms.max(1)), tables: Mutex::default() }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges an attempt from `source` (and for `user`, a name in the credentials file) to
    /// the budgets, unless one is spent. The attempt counts as failed until refunded.
    pub fn admit(&self, source: Source, user: Option<&str>, now: Instant) -> Result<Ticket, Throttled> {
        let mut tables = self.tables();
        let limit = self.config.per_source;
        if let Some(retry_after_s) = spent(tables.sources.get(&source), limit, self.window, now) {
            return Err(Throttled::Source { from: source, retry_after_s });
        }
        let user = user.filter(|_| self.config.per_user > 0);
        if let Some(user) = user {
            if let Some(retry_after_s) = spent(tables.users.get(user), self.config.per_user, self.window, now) {
                return Err(Throttled::User { user: user.to_owned(), retry_after_s });
            }
        }
        self.charge(&mut tables, source, user, now);
        Ok(Ticket { source, user: user.map(str::to_owned) })
    }

    /// Counts a failure that had no ticket (a malformed message, say), whatever the budgets.
    pub fn failed(&self, source: Source, user: Option<&str>, now: Instant) {
        let user = user.filter(|_| self.config.per_user > 0);
        self.charge(&mut self.tables(), source, user, now);
    }

    /// The attempt succeeded: it no longer counts (if its window is still the current one).
    pub fn refund(&self, ticket: Ticket) {
        let mut tables = self.tables();
        if let Some(w) = tables.sources.get_mut(&ticket.source) {
            w.failures = w.failures.saturating_sub(1);
        }
        if let Some(w) = ticket.user.and_then(|u| tables.users.get_mut(&u)) {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    fn charge(&self, tables: &mut Tables, source: Source, user: Option<&str>, now: Instant) {
        if self.config.per_source > 0 {
            if tables.sources.len() >= MAX_TRACKED_SOURCES && !tables.sources.contains_key(&source) {
                let window = self.window;
                tables.sources.retain(|_, w| now.saturating_duration_since(w.started) < window);
                if tables.sources.len() >= MAX_TRACKED_SOURCES {
                    if let Some(oldest) = tables.sources.iter().min_by_key(|(_, w)| w.started).map(|(s, _)| *s) {
                        tables.sources.remove(&oldest);
                    }
                }
            }
            bump(tables.sources.entry(source).or_insert(Window { started: now, failures: 0 }), self.window, now);
        }
        // Only names of the credentials file get here: the table is as big as that file.
        if let Some(user) = user {
            let window = tables.users.entry(user.to_owned()).or_insert(Window { started: now, failures: 0 });
            bump(window, self.window, now);
        }
    }
}

/// Seconds until the window ends, if its budget is spent.
fn spent(window: Option<&Window>, limit: u32, length: Duration, now: Instant) -> Option<u64> {
    let window = window.filter(|_| limit > 0)?;
    let elapsed = now.saturating_duration_since(window.started);
    (elapsed < length && window.failures >= limit).then(|| (length - elapsed).as_millis().div_ceil(1000) as u64)
}

fn bump(window: &mut Window, length: Duration, now: Instant) {
    if now.saturating_duration_since(window.started) >= length {
        *window = Window { started: now, failures: 0 };
    }
    window.failures = window.failures.saturating_add(1);
}

/// PLAIN passwords that verified recently, by a keyed hash of user and password: HMAC-SHA256
/// under a key drawn at start, so the table holds nothing a guess could be checked against
/// without the process's memory. The credentials are loaded once per process, so an entry
/// stays true for its life; it expires only so idle entries do not linger.
pub struct SuccessCache {
    key: hmac::Key,
    config: PasswordCacheConfig,
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Why the cache cannot start.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available for the password cache key")]
pub struct NoRandomness;

impl SuccessCache {
    pub fn new(config: PasswordCacheConfig) -> Result<Self, NoRandomness> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| NoRandomness)?;
        let ttl = Duration::from_millis(config.ttl_ms);
        Ok(Self { key, config, ttl, entries: Mutex::default() })
    }

    fn tag(&self, user: &str, password: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        // Lengths first, so no two (user, password) pairs hash the same input.
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this password verified for this user within the TTL (renewing the entry).
    pub fn hit(&self, user: &str, password: &str, now: Instant) -> bool {
        if self.config.entries == 0 {
            return false;
        }
        let tag = self.tag(user, password);
        let mut entries = self.entries();
        match entries.get_mut(&tag) {
            Some(used) if now.saturating_duration_since(*used) < self.ttl => {
                *used = now;
                true
            }
            Some(_) => {
                entries.remove(&tag);
                false
            }
            None => false,
        }
    }

    /// Remembers a password that just verified.
    pub fn insert(&self, user: &str, password: &str, now: Instant) {
        if self.config.entries == 0 {
            return;
        }
        let tag = self.tag(user, password);
        let mut entries = self.entries();
        if entries.len() >= self.config.entries && !entries.contains_key(&tag) {
            let ttl = self.ttl;
            entries.retain(|_, used| now.saturating_duration_since(*used) < ttl);
            if entries.len() >= self.config.entries {
                // Only successes get here, so this scan is as rare as a full cache of them.
                if let Some(oldest) = entries.iter().min_by_key(|(_, used)| **used).map(|(t, _)| *t) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(tag, now);
    }

    /// Forgets every entry (for when the credentials change).
    pub fn clear(&self) {
        self.entries().clear();
    }
}

/// Runs password derivations on blocking threads, at most `concurrency` at once.
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
}

/// The derivation task died (panicked) or the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the password check did not complete")]
pub struct CheckAborted;

impl PasswordChecks {
    /// `None`: half the available cores, at least one.
    pub fn new(concurrency: Option<usize>) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.unwrap_or_else(default_concurrency).max(1))) }
    }

    /// Runs `check` once a slot is free. The slot is held by the blocking task itself, so a
    /// client that hangs up mid-check does not let more derivations run than allowed.
    pub async fn run<F>(&self, check: F) -> Result<bool, CheckAborted>
    where
        F: FnOnce() -> bool + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| CheckAborted)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .map_err(|_| CheckAborted)
    }
}

pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str) -> Source {
        Source::of(ip.parse().unwrap())
    }

    #[test]
    fn a_spent_source_budget_refuses_until_its_window_ends() {
        let budgets = FailureBudgets::new(FailureBudgetConfig { per_source: 3, per_user: 0, window_ms: 60_000 });
        let t0 = Instant::now();
        let attacker = source("127.0.0.2");
        for _ in 0..3 {
            let _kept = budgets.admit(attacker, None, t0).unwrap();
        }
        let refused = budgets.admit(attacker, None, t0 + Duration::from_millis(500)).unwrap_err();
        assert_eq!(refused.to_string(), "too many failed authentications from 127.0.0.2; retry after 60 s");
        assert_eq!(refused.by(), "source");
        // Others are not affected; the attacker's budget is whole after the window.
        budgets.refund(budgets.admit(source("127.0.0.1"), None, t0).unwrap());
        assert!(budgets.admit(attacker, None, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn successes_are_refunded_and_concurrent_attempts_cannot_overdraw() {
        let budgets = FailureBudgets::new(FailureBudgetConfig { per_source: 2, per_user: 0, window_ms: 1000 });
        let now = Instant::now();
        let honest = source("10.0.0.1");
        for _ in 0..10 {
            budgets.refund(budgets.admit(honest, None, now).unwrap());
        }
        // Two checks in flight at once spend the budget before either has finished.
        let (_a, _b) = (budgets.admit(honest, None, now).unwrap(), budgets.admit(honest, None, now).unwrap());
        assert!(budgets.admit(honest, None, now).is_err());
    }

    #[test]
    fn user_budgets_count_across_sources() {
        let budgets = FailureBudgets::new(FailureBudgetConfig { per_source: 0, per_user: 2, window_ms: 10_000 });
        let now = Instant::now();
        budgets.failed(source("10.0.0.1"), Some("alice"), now);
        let _kept = budgets.admit(source("10.0.0.2"), Some("alice"), now).unwrap();
        let refused = budgets.admit(source("10.0.0.3"), Some("alice"), now + Duration::from_millis(2500)).unwrap_err();
        assert_eq!(refused.to_string(), "too many failed authentications for user `alice`; retry after 8 s");
        assert_eq!(refused.by(), "user");
        // 0 per source: unlimited, and nothing tracked.
        assert!(budgets.admit(source("10.0.0.3"), Some("bob"), now).is_ok());
        assert!(budgets.tables().sources.is_empty());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source("2001:db8:1:2:3:4:5:6"), source("2001:db8:1:2:ffff::1"));
        assert_ne!(source("2001:db8:1:2::1"), source("2001:db8:1:3::1"));
        assert_eq!(source("2001:db8:1:2:3:4:5:6").to_string(), "2001:db8:1:2::/64");
        assert_eq!(source("::ffff:127.0.0.2"), source("127.0.0.2"));
    }

    #[test]
    fn the_source_table_stays_bounded() {
        let budgets = FailureBudgets::new(FailureBudgetConfig { per_source: 5, per_user: 0, window_ms: 60_000 });
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            budgets.failed(Source::of(IpAddr::V4(i.into())), None, now + Duration::from_nanos(i.into()));
        }
        assert_eq!(budgets.tables().sources.len(), MAX_TRACKED_SOURCES);
    }

    #[test]
    fn the_cache_knows_verified_passwords_only_and_forgets_them() {
        let cache = SuccessCache::new(PasswordCacheConfig { ttl_ms: 1000, entries: 2 }).unwrap();
        let t0 = Instant::now();
        cache.insert("alice", "wonderland", t0);
        assert!(cache.hit("alice", "wonderland", t0));
        assert!(!cache.hit("alice", "wonderlan", t0));
        assert!(!cache.hit("alicew", "onderland", t0), "user and password are kept apart");
        assert!(!cache.hit("bob", "wonderland", t0));
        // Use renews an entry; idle ones expire.
        assert!(cache.hit("alice", "wonderland", t0 + Duration::from_millis(900)));
        assert!(cache.hit("alice", "wonderland", t0 + Duration::from_millis(1800)));
        assert!(!cache.hit("alice", "wonderland", t0 + Duration::from_millis(2900)));
        // Bounded: the least recently used entry goes.
        let t1 = t0 + Duration::from_secs(10);
        cache.insert("a", "1", t1);
        cache.insert("b", "2", t1 + Duration::from_millis(1));
        cache.insert("c", "3", t1 + Duration::from_millis(2));
        assert_eq!(cache.entries().len(), 2);
        assert!(!cache.hit("a", "1", t1 + Duration::from_millis(3)));
        assert!(cache.hit("c", "3", t1 + Duration::from_millis(3)));
        cache.clear();
        assert!(!cache.hit("c", "3", t1 + Duration::from_millis(3)));
        // No password in the table, and 0 entries turns it off.
        let off = SuccessCache::new(PasswordCacheConfig { ttl_ms: 1000, entries: 0 }).unwrap();
        off.insert("alice", "wonderland", t0);
        assert!(!off.hit("alice", "wonderland", t0));
    }

    #[tokio::test]
    async fn checks_run_off_the_runtime_at_bounded_concurrency() {
        let checks = Arc::new(PasswordChecks::new(Some(2)));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (checks, running, most) = (checks.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    checks
                        .run(move || {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, SeqCst);
                            i % 2 == 0
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            accepted += usize::from(task.await.unwrap());
        }
        assert_eq!(accepted, 4);
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
