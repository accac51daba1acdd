//! Who produces to and consumes from what through this sidecar, with totals: what the sidecar
//! reports to the control plane for the mesh's topology. A flow is a principal and client id, a
//! resource (a Kafka or MQTT topic; an AMQP `exchange:NAME` written to or `queue:NAME` read
//! from) and a direction. For Kafka, the consumer group of a principal's client id is learned
//! from its group requests (JoinGroup, Heartbeat, OffsetCommit, ...), which go to the group
//! coordinator on another connection than its fetches.
//!
//! Connections take a flow's counters once per resource (one lock, as for a metric's labels) and
//! then only add to atomics; the report reads them every few seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::control::{FlowDirection, FlowSource, FlowTotals};

/// Distinct flows kept; past it, new ones share one entry named `(other)`, so a client
/// inventing resource names or client ids cannot grow the table without bound.
const MAX_FLOWS: usize = 10_000;
/// The resource and client id of the shared entry.
const OTHER: &str = "(other)";
/// The longest resource name or client id kept (bytes); longer ones are cut (MQTT allows
/// 65,535-byte topics and client ids, which the bound on entries alone would not contain).
const MAX_NAME: usize = 256;

/// A connection as its flows (and metrics) name it: its principal and its client id.
#[derive(Clone, Debug)]
pub struct Party {
    pub principal: Arc<str>,
    pub client_id: Arc<str>,
}

impl Party {
    pub fn new(principal: Arc<str>, client_id: &str) -> Self {
        Party { principal, client_id: cut(client_id).into() }
    }
}

/// `name` cut to [`MAX_NAME`] bytes at a character boundary.
fn cut(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    principal: String,
    client_id: String,
    resource: String,
    direction: FlowDirection,
}

/// One flow's totals since the sidecar started.
#[derive(Debug, Default)]
pub struct FlowCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub denied: AtomicU64,
}

impl FlowCounters {
    /// `records` messages of `bytes` bytes passed.
    pub fn count(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One request or message refused.
    pub fn deny(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Flows {
    table: Mutex<HashMap<FlowKey, Arc<FlowCounters>>>,
    /// (principal, client id) → the consumer group it last named; bounded like the flows.
    groups: Mutex<HashMap<(String, String), String>>,
}

impl Flows {
    /// The counters of one flow (made on first use).
    pub fn counters(
        &self,
        principal: &str,
        client_id: &str,
        resource: &str,
        direction: FlowDirection,
    ) -> Arc<FlowCounters> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let key = FlowKey {
            principal: principal.to_owned(),
            client_id: cut(client_id).to_owned(),
            resource: cut(resource).to_owned(),
            direction,
        };
        if let Some(counters) = table.get(&key) {
            return counters.clone();
        }
        // Past the bound, a client inventing names or client ids shares one entry.
        let key = if table.len() < MAX_FLOWS {
            key
        } else {
            FlowKey { resource: OTHER.into(), client_id: OTHER.into(), ..key }
        };
        table.entry(key).or_default().clone()
    }

    /// `client_id` of `principal` is a member of `group`.
    pub fn set_group(&self, principal: &str, client_id: &str, group: &str) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let key = (principal.to_owned(), client_id.to_owned());
        if groups.get(&key).is_some_and(|known| known == group) {
            return;
        }
        if groups.len() < MAX_FLOWS || groups.contains_key(&key) {
            groups.insert(key, group.to_owned());
        }
    }

    /// What the control client asks for every report: these flows' totals.
    pub fn source(self: &Arc<Self>) -> FlowSource {
        let flows = self.clone();
        Arc::new(move || flows.totals())
    }

    /// Every flow's totals now.
    pub fn totals(&self) -> Vec<FlowTotals> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .iter()
            .map(|(key, c)| FlowTotals {
                principal: key.principal.clone(),
                client_id: key.client_id.clone(),
                group: groups.get(&(key.principal.clone(), key.client_id.clone())).cloned().unwrap_or_default(),
                resource: key.resource.clone(),
                direction: key.direction,
                records: c.records.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                denied: c.denied.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_counted_per_principal_topic_and_direction_and_bounded() {
        let flows = Flows::default();
        flows.counters("a", "app", "t", FlowDirection::Produce).records.fetch_add(3, Ordering::Relaxed);
        flows.counters("a", "app", "t", FlowDirection::Produce).bytes.fetch_add(30, Ordering::Relaxed);
        flows.counters("a", "app", "t", FlowDirection::Consume).denied.fetch_add(1, Ordering::Relaxed);
        flows.set_group("a", "app", "billing");
        let mut totals = flows.totals();
        totals.sort_by_key(|t| t.direction as u8);
        assert_eq!((totals[0].records, totals[0].bytes, totals[0].denied), (3, 30, 0));
        assert_eq!((totals[1].direction, totals[1].denied), (FlowDirection::Consume, 1));
        assert_eq!((totals[1].client_id.as_str(), totals[1].group.as_str()), ("app", "billing"));
        flows.counters("a", "other-app", "t", FlowDirection::Consume);
        let other = flows.totals().into_iter().find(|t| t.client_id == "other-app").unwrap();
        assert_eq!(other.group, "", "another client id of the same principal is not in the group");
        for i in 0..MAX_FLOWS + 5 {
            flows.counters("b", "app", &format!("t{i}"), FlowDirection::Produce);
        }
        for i in 0..100 {
            flows.counters("b", &format!("client-{i}"), "t0", FlowDirection::Produce);
        }
        for i in 0..MAX_FLOWS + 5 {
            flows.set_group("b", &format!("client-{i}"), "g");
        }
        assert!(flows.groups.lock().unwrap().len() <= MAX_FLOWS);
        assert!(flows.totals().len() <= MAX_FLOWS + 1);
        assert!(flows.totals().iter().any(|t| t.resource == "(other)"));
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let flows = Flows::default();
        let long = "é".repeat(200);
        flows.counters("a", &long, &long, FlowDirection::Produce).count(1, 1);
        let totals = flows.totals();
        assert_eq!((totals[0].resource.len(), totals[0].client_id.len()), (256, 256));
        assert_eq!(&*Party::new("a".into(), &long).client_id, &long[..256]);
    }
}
