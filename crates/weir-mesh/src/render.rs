//! What one sidecar runs: its `Workload`, that workload's `KafkaCluster`, the
//! `PeerAuthentication` and `AuthorizationPolicy` resources that select it, rendered into the
//! sidecar config file's own schema (as JSON). The sidecar reads it with the same types as a
//! local file, so the two cannot drift apart.

use std::path::Path;

use serde_json::{Map, Value};
use weir_kafka_proxy::SidecarConfig;

use crate::error::MeshError;
use crate::kinds::Kind;
use crate::state::MeshState;

/// Workload fields that describe the workload to the mesh, not its sidecar's settings.
const MESH_ONLY: [&str; 4] = ["cluster", "service", "namespace", "join_token_sha256"];

impl MeshState {
    /// The sidecar config of `workload`, as JSON in the config file's schema.
    pub fn sidecar_config(&self, workload: &str) -> Result<Value, MeshError> {
        let id = format!("{}/{workload}", Kind::Workload);
        let resource =
            self.get(Kind::Workload, workload).ok_or_else(|| MeshError::NotFound { resource: id.clone() })?;
        let mut config: Map<String, Value> = resource.spec.as_object().cloned().unwrap_or_default();
        for key in MESH_ONLY {
            config.remove(key);
        }
        let cluster_name = config_str(&resource.spec, "cluster");
        let cluster = self.get(Kind::KafkaCluster, &cluster_name).ok_or_else(|| MeshError::Reference {
            resource: id.clone(),
            message: format!("`spec.cluster` names KafkaCluster/{cluster_name}, which does not exist"),
        })?;
        config.insert("bootstrap".into(), cluster.spec["bootstrap"].clone());
        if let Some(upstream) = cluster.spec.get("upstream") {
            config.insert("upstream".into(), upstream.clone());
        }
        if let Some(peer) = self.peer_authentication_for(resource) {
            for key in ["tls", "sasl", "fixed_principal"] {
                if let Some(value) = peer.spec.get(key).filter(|v| !v.is_null()) {
                    config.insert(key.into(), value.clone());
                }
            }
        }
        let rules: Vec<Value> =
            self.policies_for(resource).flat_map(|p| p.spec["rules"].as_array().cloned().unwrap_or_default()).collect();
        // No policy selects the workload: every request is allowed, as with no policy file.
        if !rules.is_empty() {
            config.insert("authorization".into(), serde_json::json!({ "rules": rules }));
        }
        Ok(Value::Object(config))
    }

    /// Renders every workload's sidecar config and reads it as the sidecar will, so that a
    /// change a sidecar could not use is refused at apply, not discovered by a NACK.
    pub(crate) fn check_renders(&self) -> Result<(), MeshError> {
        for workload in self.list(Kind::Workload) {
            let config = self.sidecar_config(&workload.metadata.name)?;
            SidecarConfig::from_json(config, Path::new("rendered")).map_err(|err| match err {
                weir_core::config::ConfigError::Invalid { key, message, .. } => MeshError::Reference {
                    resource: workload.id(),
                    message: format!("its sidecar config is not valid at `{key}`: {message}"),
                },
                other => MeshError::Reference { resource: workload.id(), message: other.to_string() },
            })?;
        }
        Ok(())
    }
}

fn config_str(spec: &Value, key: &str) -> String {
    spec.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use crate::{parse_documents, MeshState};

    const MESH: &str = "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:9092'], upstream: {connect_timeout_ms: 500}}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: orders, labels: {team: shop}}\nspec: {cluster: main, namespace: shop, listen: '127.0.0.1:19092', workers: 2}\n---\napiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{effect: allow, principals: ['*'], resources: ['topic:a'], operations: [read]}]}\n---\napiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: b}\nspec: {selector: {match_labels: {team: shop}}, rules: [{effect: deny, principals: [x], resources: ['topic:a'], operations: [read]}]}\n---\napiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: c}\nspec: {selector: {workloads: [billing]}, rules: [{effect: allow, principals: [y], resources: ['topic:c'], operations: [all]}]}\n---\napiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {selector: {workloads: [orders]}, fixed_principal: orders}\n";

    #[test]
    fn a_workload_gets_its_cluster_its_peer_authentication_and_the_rules_that_select_it() {
        let (state, _) = MeshState::default().apply(&parse_documents(MESH, "t").unwrap()).unwrap();
        let config = state.sidecar_config("orders").unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "listen": "127.0.0.1:19092",
                "workers": 2,
                "bootstrap": ["b:9092"],
                "upstream": {"connect_timeout_ms": 500},
                "fixed_principal": "orders",
                "authorization": {"rules": [
                    {"effect": "allow", "principals": ["*"], "resources": ["topic:a"], "operations": ["read"]},
                    {"effect": "deny", "principals": ["x"], "resources": ["topic:a"], "operations": ["read"]},
                ]},
            })
        );
    }

    #[test]
    fn a_change_that_no_sidecar_could_use_is_refused_at_apply() {
        let (state, _) = MeshState::default().apply(&parse_documents(MESH, "t").unwrap()).unwrap();
        // Fine on its own (a port), but the workload's broker ports would include its listen port.
        let clash = MESH.replace("workers: 2", "broker_ports: {base: 19090, count: 10}");
        let err = state.apply(&parse_documents(&clash, "t").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Workload/orders: its sidecar config is not valid at `broker_ports.base`: range 19090-19099 contains the listen port 19092"
        );
    }

    #[test]
    fn quotas_render_into_the_sidecar_config_and_a_bad_one_is_refused_with_its_field() {
        let quota = "quotas: [{name: slow, principals: ['*'], produce_bytes_per_second: 5000000}]";
        let with_quota = MESH.replace("workers: 2", quota);
        let (state, _) = MeshState::default().apply(&parse_documents(&with_quota, "t").unwrap()).unwrap();
        let rendered = state.sidecar_config("orders").unwrap();
        assert_eq!(rendered["quotas"][0]["produce_bytes_per_second"], 5000000);
        let negative = MESH.replace("workers: 2", &quota.replace("5000000", "-1"));
        let err = state.apply(&parse_documents(&negative, "t").unwrap()).unwrap_err().to_string();
        assert!(err.contains("Workload/orders") && err.contains("quotas[0].produce_bytes_per_second"), "{err}");
    }

    /// A Workload setting `spec` renders into its sidecar's config (`expected` at the JSON
    /// pointer `at`), and the same setting with `good` replaced by `bad` is refused at apply
    /// time with the workload and `field` named.
    fn renders_and_refuses(spec: &str, at: &str, expected: serde_json::Value, (good, bad): (&str, &str), field: &str) {
        let (state, _) =
            MeshState::default().apply(&parse_documents(&MESH.replace("workers: 2", spec), "t").unwrap()).unwrap();
        assert_eq!(state.sidecar_config("orders").unwrap().pointer(at), Some(&expected), "{spec}");
        let refused = MESH.replace("workers: 2", &spec.replace(good, bad));
        let err = state.apply(&parse_documents(&refused, "t").unwrap()).unwrap_err().to_string();
        assert!(err.contains("Workload/orders") && err.contains(field), "{err}");
    }

    #[test]
    fn traffic_and_event_policies_render_into_the_sidecar_config_and_bad_ones_are_refused_with_their_field() {
        let fault = "faults: [{name: nl, api_keys: [Produce], rate: 0.1, inject: {error: NOT_LEADER_OR_FOLLOWER}}]";
        let error = ("NOT_LEADER_OR_FOLLOWER", "NOT_A_LEADER");
        renders_and_refuses(fault, "/faults/0/inject/error", error.0.into(), error, "faults[0].inject.error");
        let shadow = "shadows: [{name: s, topic: orders, to: orders.shadow}]";
        let onto_itself = ("orders.shadow", "orders");
        renders_and_refuses(shadow, "/shadows/0/to", "orders.shadow".into(), onto_itself, "shadows[0].to");
        let canary = "canaries: [{name: c, topic: orders, to: orders-canary, share: 0.1}]";
        renders_and_refuses(canary, "/canaries/0/share", 0.1.into(), ("0.1", "1.5"), "canaries[0].share");
        let alias = "topic_aliases: [{topic: orders, to: orders-v2}]";
        let spaced = ("orders-v2", "'orders v2'");
        renders_and_refuses(alias, "/topic_aliases/0/to", "orders-v2".into(), spaced, "topic_aliases[0].to");
        let limits = "topic_creation: [{name: small, max_partitions: 12}]";
        let at = "/topic_creation/0/max_partitions";
        renders_and_refuses(limits, at, 12.into(), ("12", "0"), "topic_creation[0].max_partitions");
    }
}
