//! The mesh's topology: which workload (principal, client id) produces to or consumes from
//! which topic in which consumer group, with rates, merged from what every sidecar reports (totals every few seconds; rates are the differences
//! between a sidecar's last two reports). `weir ctl topology` and the web page show it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_control_api::v1::{Direction, Flow};
use weir_mesh::{Kind, MeshState};

/// A sidecar not heard from for this long no longer adds to the rates.
const STALE_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowId {
    principal: String,
    client_id: String,
    group: String,
    resource: String,
    produce: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    records: u64,
    bytes: u64,
    denied: u64,
}

struct Reported {
    workload: String,
    at: Instant,
    totals: HashMap<FlowId, Totals>,
    /// Per second, from the last two reports.
    rates: HashMap<FlowId, (f64, f64)>,
}

#[derive(Default)]
pub struct Topology {
    by_sidecar: Mutex<HashMap<String, Reported>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `workload/NAME` or `topic/CLUSTER/NAME` (CLUSTER: the Kafka cluster or the MQTT or AMQP
    /// broker; NAME: a topic, or an AMQP `exchange:NAME` or `queue:NAME`).
    pub id: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `produce` (workload → topic) or `consume` (topic → workload).
    pub direction: String,
    pub principal: String,
    /// The client id the requests carried.
    #[serde(default)]
    pub client_id: String,
    /// The consumer group of that client id (consume edges; empty when none).
    #[serde(default)]
    pub group: String,
    pub records_per_second: f64,
    pub bytes_per_second: f64,
    pub records: u64,
    pub bytes: u64,
    /// Requests the policy refused on this flow.
    pub denied: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub version: u64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Topology {
    /// A sidecar's report: its totals now.
    pub fn record(&self, sidecar_id: &str, workload: &str, flows: &[Flow]) {
        let now = Instant::now();
        let totals: HashMap<FlowId, Totals> = flows
            .iter()
            .filter(|f| f.direction != Direction::Unspecified as i32)
            .map(|f| {
                let id = FlowId {
                    principal: f.principal.clone(),
                    client_id: f.client_id.clone(),
                    group: f.group.clone(),
                    resource: f.resource.clone(),
                    produce: f.direction == Direction::Produce as i32,
                };
                (id, Totals { records: f.records, bytes: f.bytes, denied: f.denied })
            })
            .collect();
        let mut by_sidecar = self.by_sidecar.lock().unwrap_or_else(|p| p.into_inner());
        let rates = match by_sidecar.get(sidecar_id) {
            Some(previous) => {
                let seconds = now.duration_since(previous.at).as_secs_f64().max(0.001);
                totals
                    .iter()
                    .map(|(id, t)| {
                        let before = previous.totals.get(id).copied().unwrap_or_default();
                        let records = t.records.saturating_sub(before.records) as f64 / seconds;
                        let bytes = t.bytes.saturating_sub(before.bytes) as f64 / seconds;
                        (id.clone(), (records, bytes))
                    })
                    .collect()
            }
            None => HashMap::new(),
        };
        by_sidecar.insert(sidecar_id.to_owned(), Reported { workload: workload.to_owned(), at: now, totals, rates });
    }

    /// The graph: workloads and topics, and the flows between them summed over sidecars.
    pub fn graph(&self, state: &MeshState) -> Graph {
        let by_sidecar = self.by_sidecar.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // (workload, flow) → (rates, totals)
        let mut merged: BTreeMap<(String, FlowId), ((f64, f64), Totals)> = BTreeMap::new();
        for reported in by_sidecar.values() {
            let fresh = now.duration_since(reported.at) < STALE_AFTER;
            for (id, totals) in &reported.totals {
                let entry = merged.entry((reported.workload.clone(), id.clone())).or_default();
                if fresh {
                    let (records, bytes) = reported.rates.get(id).copied().unwrap_or_default();
                    entry.0 .0 += records;
                    entry.0 .1 += bytes;
                }
                entry.1.records += totals.records;
                entry.1.bytes += totals.bytes;
                entry.1.denied += totals.denied;
            }
        }
        // The cluster (Kafka) or broker (MQTT, AMQP) the workload reaches names its topics.
        let cluster_of = |workload: &str| {
            state
                .get(Kind::Workload, workload)
                .map(|w| weir_mesh::kinds::workload::broker_of(w).1)
                .unwrap_or_else(|| "?".into())
        };
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for workload in state.list(Kind::Workload) {
            let name = workload.metadata.name.clone();
            nodes.insert(
                format!("workload/{name}"),
                Node { id: format!("workload/{name}"), kind: "workload".into(), name, cluster: None },
            );
        }
        let mut edges = Vec::new();
        for ((workload, id), ((records_per_second, bytes_per_second), totals)) in merged {
            let cluster = cluster_of(&workload);
            let topic = format!("topic/{cluster}/{}", id.resource);
            let workload_id = format!("workload/{workload}");
            nodes.entry(workload_id.clone()).or_insert_with(|| Node {
                id: workload_id.clone(),
                kind: "workload".into(),
                name: workload.clone(),
                cluster: None,
            });
            nodes.entry(topic.clone()).or_insert_with(|| Node {
                id: topic.clone(),
                kind: "topic".into(),
                name: id.resource.clone(),
                cluster: Some(cluster.clone()),
            });
            let (from, to) = if id.produce { (workload_id, topic) } else { (topic, workload_id) };
            edges.push(Edge {
                from,
                to,
                direction: if id.produce { "produce" } else { "consume" }.into(),
                principal: id.principal,
                client_id: id.client_id,
                group: id.group,
                records_per_second,
                bytes_per_second,
                records: totals.records,
                bytes: totals.bytes,
                denied: totals.denied,
            });
        }
        Graph { version: state.version, nodes: nodes.into_values().collect(), edges }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(principal: &str, resource: &str, direction: Direction, records: u64, denied: u64) -> Flow {
        Flow {
            principal: principal.into(),
            resource: resource.into(),
            direction: direction as i32,
            records,
            bytes: records * 100,
            denied,
            client_id: format!("{principal}-app"),
            group: if direction == Direction::Consume { "billing-group".into() } else { String::new() },
        }
    }

    #[test]
    fn sidecars_reports_merge_into_a_graph_with_rates() {
        let mesh = "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:1']}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: orders}\nspec: {cluster: main, listen: '127.0.0.1:1'}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: billing}\nspec: {cluster: main, listen: '127.0.0.1:2'}\n";
        let (state, _) = MeshState::default().apply(&weir_mesh::parse_documents(mesh, "t").unwrap()).unwrap();
        let topology = Topology::default();
        topology.record("s1", "orders", &[flow("orders", "orders.created", Direction::Produce, 10, 0)]);
        topology.record("s2", "orders", &[flow("orders", "orders.created", Direction::Produce, 5, 0)]);
        topology.record(
            "s3",
            "billing",
            &[
                flow("billing", "orders.created", Direction::Consume, 7, 0),
                flow("billing", "secret", Direction::Produce, 0, 3),
            ],
        );
        std::thread::sleep(Duration::from_millis(100));
        topology.record("s1", "orders", &[flow("orders", "orders.created", Direction::Produce, 20, 0)]);
        let graph = topology.graph(&state);
        let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["topic/main/orders.created", "topic/main/secret", "workload/billing", "workload/orders"]);
        let produced = graph.edges.iter().find(|e| e.from == "workload/orders").unwrap();
        assert_eq!(
            (produced.to.as_str(), produced.records),
            ("topic/main/orders.created", 25),
            "two sidecars of one workload add up"
        );
        assert!(produced.records_per_second > 10.0, "10 records in about 0.1 s: {}", produced.records_per_second);
        let consumed = graph.edges.iter().find(|e| e.direction == "consume").unwrap();
        assert_eq!((consumed.from.as_str(), consumed.to.as_str()), ("topic/main/orders.created", "workload/billing"));
        assert_eq!((consumed.client_id.as_str(), consumed.group.as_str()), ("billing-app", "billing-group"));
        let denied = graph.edges.iter().find(|e| e.denied > 0).unwrap();
        assert_eq!((denied.to.as_str(), denied.denied), ("topic/main/secret", 3));
    }
}
