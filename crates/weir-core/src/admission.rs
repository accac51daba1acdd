//! Who may open a connection: limits on connections in total and per source address, checked
//! at accept before a connection costs anything more than its socket; the pace at which new
//! connections are accepted at all (as Kafka's `max.connection.creation.rate`, a burst of one
//! second's worth, then late rather than refused); and the process's descriptor limit raised
//! so those limits, not the kernel's, are what a flood runs into.
//!
//! Shared by every listener whatever its protocol; a refused connection is closed at once and
//! counted by the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the sidecar holds its maximum of {0} connections")]
    Total(usize),
    #[error("this source address holds its maximum of {0} connections")]
    PerSource(usize),
}

impl Refused {
    /// A short label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Total(_) => "total_limit",
            Self::PerSource(_) => "per_source_limit",
        }
    }
}

/// Connection counts, in total and per source address, against their limits (0: unlimited).
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    counts: Mutex<Counts>,
    pace: Option<Mutex<Pace>>,
}

/// New connections a second: credit refilled at `rate`, up to one second's worth.
struct Pace {
    rate: f64,
    credit: f64,
    at: Instant,
}

impl Pace {
    /// Takes one connection's credit; how long until the credit it took was there.
    fn reserve(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.credit = (self.credit + refill).min(self.rate.max(1.0)) - 1.0;
        self.at = now;
        if self.credit >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.credit / self.rate)
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Self::with_creation_rate(max_total, max_per_source, None)
    }

    /// As [`Admission::new`], accepting at most `per_second` new connections a second (after
    /// a burst of one second's worth) when set.
    pub fn with_creation_rate(max_total: usize, max_per_source: usize, per_second: Option<f64>) -> Arc<Self> {
        let pace = per_second.map(|rate| Mutex::new(Pace { rate, credit: rate.max(1.0), at: Instant::now() }));
        Arc::new(Self { max_total, max_per_source, counts: Mutex::default(), pace })
    }

    /// How long a connection just accepted must wait before it is served, so that the
    /// sidecar's creation rate holds (zero without one). Its place in the pace is taken now.
    pub fn pace(&self) -> Duration {
        let Some(pace) = &self.pace else { return Duration::ZERO };
        pace.lock().unwrap_or_else(|p| p.into_inner()).reserve(Instant::now())
    }

    /// Admits one more connection from `source`, or says which limit it would break. The
    /// returned guard gives the place back when the connection ends.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admitted, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.max_total > 0 && counts.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
        if self.max_per_source > 0 && from_source >= self.max_per_source {
            return Err(Refused::PerSource(self.max_per_source));
        }
        counts.total += 1;
        counts.per_source.insert(source, from_source + 1);
        Ok(Admitted { admission: self.clone(), source })
    }

    /// Connections held now (for tests and status).
    pub fn held(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.admission.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// Descriptors kept free of client connections: listeners, the admin port, log and policy
/// files, connections of the sidecar's own (probes, lookups).
const RESERVED_DESCRIPTORS: u64 = 64;

/// The most connections that fit the process's descriptor limit when each may hold two
/// descriptors (client and upstream): `configured` (0: unlimited) lowered to fit, so a flood
/// meets the sidecar's own limit, refused and counted, before the kernel refuses sockets.
pub fn fit_to_descriptors(configured: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let fitting = usize::try_from(limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS) / 2).unwrap_or(usize::MAX).max(1);
    if configured == 0 {
        fitting
    } else {
        configured.min(fitting)
    }
}

/// Raises the soft limit on open descriptors to the hard limit, so a busy sidecar runs out of
/// its own connection budget before the kernel refuses it sockets. Returns the limits before
/// and after (soft, hard), or why they could not be read or set.
pub fn raise_descriptor_limit() -> std::io::Result<((u64, u64), (u64, u64))> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = (limit.rlim_cur, limit.rlim_max);
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok((before, (limit.rlim_max, limit.rlim_max)));
    }
    Ok((before, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_creation_rate_lets_a_burst_through_then_paces_the_rest() {
        let admission = Admission::with_creation_rate(0, 0, Some(4.0));
        let waits: Vec<Duration> = (0..8).map(|_| admission.pace()).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 0, 0, 0, 250, 500, 750, 1000], "a second's worth at once, then one every 250 ms");
        // A second later the credit is back to one second's worth, no more.
        tokio::time::advance(Duration::from_secs(3)).await;
        let again: Vec<u128> = (0..5).map(|_| admission.pace().as_millis()).collect();
        assert_eq!(again, vec![0, 0, 0, 0, 250]);
        assert_eq!(Admission::new(0, 0).pace(), Duration::ZERO);
    }

    #[test]
    fn limits_per_source_and_in_total_and_frees_places() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let admission = Admission::new(3, 2);
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refused::PerSource(2)));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(c).err(), Some(Refused::Total(3)));
        drop(first);
        assert_eq!(admission.held(), 2);
        let _again = admission.admit(a).unwrap();
    }

    #[test]
    fn zero_means_unlimited() {
        let admission = Admission::new(0, 0);
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..10_000).map(|_| admission.admit(source).unwrap()).collect();
        assert_eq!(admission.held(), held.len());
    }

    #[test]
    fn connection_limits_fit_the_descriptor_limit() {
        let fitting = fit_to_descriptors(0);
        assert!(fitting >= 1);
        assert_eq!(fit_to_descriptors(usize::MAX), fitting);
        assert_eq!(fit_to_descriptors(1), 1);
    }

    #[test]
    fn the_descriptor_limit_ends_at_the_hard_limit() {
        let (_, (soft, hard)) = raise_descriptor_limit().unwrap();
        assert_eq!(soft, hard);
    }
}
