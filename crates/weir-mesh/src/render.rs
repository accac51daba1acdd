//! What one sidecar runs: its `Workload`, that workload's `KafkaCluster` (or `MqttBroker`,
//! `AmqpBroker`), the `PeerAuthentication` and the `AuthorizationPolicy` resources of its
//! protocol that select it, rendered into the sidecar config file's own schema (as JSON). The
//! sidecar reads it with the same types as a local file, so the two cannot drift apart.
//!
//! An MQTT or AMQP workload's config carries `protocol` (which the sidecar takes out before
//! reading the rest); a Kafka workload's has none. A gateway's (`mqtt-gateway`, `http-gateway`)
//! gets its KafkaCluster's brokers as `kafka.bootstrap` and the mesh's Kafka policies.

use serde_json::{Map, Value};

use crate::error::MeshError;
use crate::kinds::workload::{broker_of, MESH_ONLY};
use crate::kinds::Kind;
use crate::protocol::Protocol;
use crate::resource::Resource;
use crate::state::MeshState;

impl MeshState {
    /// The sidecar config of `workload`, as JSON in the config file's schema.
    pub fn sidecar_config(&self, workload: &str) -> Result<Value, MeshError> {
        let id = format!("{}/{workload}", Kind::Workload);
        let resource =
            self.get(Kind::Workload, workload).ok_or_else(|| MeshError::NotFound { resource: id.clone() })?;
        let protocol = Protocol::of(&resource.spec);
        let mut config: Map<String, Value> = resource.spec.as_object().cloned().unwrap_or_default();
        for key in MESH_ONLY {
            config.remove(key);
        }
        let (kind, name) = broker_of(resource);
        let broker = self.get(kind, &name).ok_or_else(|| MeshError::Reference {
            resource: id.clone(),
            message: format!("`spec.{}` names {kind}/{name}, which does not exist", protocol.broker_field()),
        })?;
        let keys: &[&str] = match protocol {
            Protocol::Kafka => &["bootstrap", "upstream"],
            Protocol::Mqtt | Protocol::Amqp => &["upstream", "upstream_tls", "broker_credentials"],
            Protocol::MqttGateway | Protocol::HttpGateway => {
                gateway_kafka(broker, resource, &mut config)?;
                &[]
            }
        };
        for key in keys {
            if let Some(value) = broker.spec.get(*key) {
                config.insert((*key).into(), value.clone());
            }
        }
        if let Some(peer) = self.peer_authentication_for(resource) {
            peer_authentication(protocol, peer, resource, &mut config)?;
        }
        let rules: Vec<Value> =
            self.policies_for(resource).flat_map(|p| p.spec["rules"].as_array().cloned().unwrap_or_default()).collect();
        // No policy selects the workload: every request is allowed, as with no policy file.
        if !rules.is_empty() {
            config.insert("authorization".into(), serde_json::json!({ "rules": rules }));
        }
        if protocol != Protocol::Kafka {
            config.insert("protocol".into(), protocol.name().into());
        }
        Ok(Value::Object(config))
    }

    /// Renders every workload's sidecar config and reads it as the sidecar will, so that a
    /// change a sidecar could not use is refused at apply, not discovered by a NACK.
    pub(crate) fn check_renders(&self) -> Result<(), MeshError> {
        for workload in self.list(Kind::Workload) {
            let (protocol, config) = Protocol::split(self.sidecar_config(&workload.metadata.name)?)
                .map_err(|message| MeshError::Reference { resource: workload.id(), message })?;
            protocol.check_config(config, std::path::Path::new("rendered")).map_err(|err| match err {
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

/// A gateway's `kafka.bootstrap`: its KafkaCluster's brokers. The gateway's Kafka client speaks
/// neither TLS nor SASL of its own (it reaches such a cluster through a Weir sidecar, whose
/// listener a KafkaCluster can name) and resolves names itself: a cluster that asks for any
/// of these is refused rather than reached without them.
fn gateway_kafka(cluster: &Resource, workload: &Resource, config: &mut Map<String, Value>) -> Result<(), MeshError> {
    let upstream = cluster.spec.get("upstream");
    for key in ["tls", "sasl", "sasl_by_principal", "resolve"] {
        let set = upstream.and_then(|u| u.get(key)).is_some_and(|v| {
            !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) || v.as_object().is_some_and(|o| o.is_empty()))
        });
        if set {
            return Err(MeshError::Reference {
                resource: workload.id(),
                message: format!(
                    "{} asks for `upstream.{key}`, which a gateway's Kafka client does not do: name a KafkaCluster \
                     whose bootstrap is plaintext (a Weir sidecar's listener, for TLS and SASL)",
                    cluster.id()
                ),
            });
        }
    }
    let bootstrap: Vec<&str> = cluster
        .spec
        .get("bootstrap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let kafka = config.entry("kafka").or_insert_with(|| Value::Object(Map::new()));
    if let Some(kafka) = kafka.as_object_mut() {
        kafka.insert("bootstrap".into(), bootstrap.join(",").into());
    }
    Ok(())
}

/// The peer authentication's sections in the workload's sidecar config. Kafka takes `tls`,
/// `sasl` and `fixed_principal` as they are. MQTT and AMQP clients log in with a username and
/// password, checked against `sasl.credentials` (the same users as Kafka's PLAIN and SCRAM);
/// a `sasl` those logins could not honour (no credentials file, or mechanisms without PLAIN,
/// which is how these logins carry the password) is refused rather than left unchecked.
fn peer_authentication(
    protocol: Protocol,
    peer: &Resource,
    workload: &Resource,
    config: &mut Map<String, Value>,
) -> Result<(), MeshError> {
    for key in ["tls", "fixed_principal"] {
        if let Some(value) = peer.spec.get(key).filter(|v| !v.is_null()) {
            config.insert(key.into(), value.clone());
        }
    }
    let Some(sasl) = peer.spec.get("sasl").filter(|v| !v.is_null()) else { return Ok(()) };
    if protocol == Protocol::Kafka {
        config.insert("sasl".into(), sasl.clone());
        return Ok(());
    }
    let refused = |why: &str| MeshError::Reference {
        resource: workload.id(),
        message: format!("{} selects this {protocol} workload, but {why}", peer.id()),
    };
    if protocol == Protocol::HttpGateway {
        // HTTP callers bring bearer tokens, checked as SASL/OAUTHBEARER's are.
        let tokens = sasl.get("oauthbearer").filter(|t| !t.is_null()).ok_or_else(|| {
            refused("its `sasl` has no `oauthbearer`, and HTTP callers prove who they are with bearer tokens")
        })?;
        config.insert("bearer".into(), tokens.clone());
        return Ok(());
    }
    let credentials = sasl.get("credentials").filter(|c| !c.is_null()).ok_or_else(|| {
        refused("its `sasl` has no `credentials` file, which is what logins with a username and password are checked against")
    })?;
    let mechanisms = sasl.get("mechanisms").and_then(Value::as_array);
    if mechanisms.is_some_and(|m| !m.iter().any(|m| m.as_str() == Some("PLAIN"))) {
        return Err(refused(
            "its `sasl.mechanisms` leave PLAIN out, and these logins carry the password as PLAIN does",
        ));
    }
    config.insert("credentials".into(), credentials.clone());
    Ok(())
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

    const BROKERS: &str = "apiVersion: weir/v1alpha1\nkind: MqttBroker\nmetadata: {name: edge}\nspec: {upstream: '127.0.0.1:1883', upstream_tls: {ca: /etc/weir/broker-ca.pem, workload_identity: true}, broker_credentials: {username: weir, password: s3cret}}\n---\napiVersion: weir/v1alpha1\nkind: AmqpBroker\nmetadata: {name: rabbit}\nspec: {upstream: '127.0.0.1:5672'}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: sensors, labels: {team: shop}}\nspec: {protocol: mqtt, broker: edge, listen: '127.0.0.1:11884', limits: {max_packet_bytes: 65536}}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: billing}\nspec: {protocol: amqp, broker: rabbit, listen: '127.0.0.1:15680'}\n---\napiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: sensors-topics}\nspec: {protocol: mqtt, rules: [{effect: allow, principals: ['*'], resources: ['topic:sensors/#'], operations: [publish]}]}\n---\napiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: billing-queues}\nspec: {protocol: amqp, selector: {workloads: [billing]}, rules: [{effect: allow, principals: ['*'], resources: ['queue:invoices'], operations: [consume]}]}\n---\napiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: users}\nspec: {selector: {workloads: [sensors, billing]}, sasl: {credentials: /etc/weir/users.yaml}}\n";

    fn mesh_with_brokers() -> MeshState {
        let text = format!("{MESH}---\n{BROKERS}");
        MeshState::default().apply(&parse_documents(&text, "t").unwrap()).unwrap().0
    }

    #[test]
    fn mqtt_and_amqp_workloads_get_their_broker_their_logins_and_only_their_protocols_rules() {
        let state = mesh_with_brokers();
        assert_eq!(
            state.sidecar_config("sensors").unwrap(),
            serde_json::json!({
                "protocol": "mqtt",
                "listen": "127.0.0.1:11884",
                "limits": {"max_packet_bytes": 65536},
                "upstream": "127.0.0.1:1883",
                "upstream_tls": {"ca": "/etc/weir/broker-ca.pem", "workload_identity": true},
                "broker_credentials": {"username": "weir", "password": "s3cret"},
                "credentials": "/etc/weir/users.yaml",
                "authorization": {"rules": [
                    {"effect": "allow", "principals": ["*"], "resources": ["topic:sensors/#"], "operations": ["publish"]},
                ]},
            })
        );
        let billing = state.sidecar_config("billing").unwrap();
        assert_eq!(billing["protocol"], "amqp");
        assert_eq!(billing["upstream"], "127.0.0.1:5672");
        assert_eq!(billing["authorization"]["rules"].as_array().unwrap().len(), 1, "{billing}");
        // The mesh-wide Kafka policy `a` selects every workload, but only Kafka ones use it.
        let orders = state.sidecar_config("orders").unwrap();
        assert_eq!(orders["authorization"]["rules"].as_array().unwrap().len(), 2, "{orders}");
        assert!(orders.get("protocol").is_none());
    }

    #[test]
    fn what_an_mqtt_or_amqp_workload_cannot_use_is_refused_with_where_it_belongs() {
        let state = mesh_with_brokers();
        let refused = |find: &str, replace: &str| {
            let text = format!("{MESH}---\n{}", BROKERS.replace(find, replace));
            assert_ne!(text, format!("{MESH}---\n{BROKERS}"), "{find}");
            match parse_documents(&text, "t") {
                Ok(resources) => state.apply(&resources).unwrap_err().to_string(),
                Err(err) => err.to_string(),
            }
        };
        let err = refused("broker: edge,", "cluster: main,");
        assert!(err.contains("at `spec.cluster`: `cluster` is a Kafka workload's"), "{err}");
        let err = refused("broker: edge,", "broker: edge, fixed_principal: x,");
        assert!(err.contains("at `spec.fixed_principal`: `fixed_principal` comes from a PeerAuthentication"), "{err}");
        let err = refused("limits: {max_packet_bytes: 65536}", "quotas: []");
        assert!(err.contains("Workload/sensors") && err.contains("unknown field `quotas`"), "{err}");
        let err = refused("limits: {max_packet_bytes: 65536}", "limits: {max_packet_bytes: 8}");
        assert!(err.contains("Workload/sensors") && err.contains("spec.limits"), "{err}");
        let err = refused("broker: edge,", "broker: nowhere,");
        assert!(err.contains("`spec.broker` names MqttBroker/nowhere, which does not exist"), "{err}");
        let err = refused("protocol: amqp, broker: rabbit", "protocol: amqp, broker: edge");
        assert!(err.contains("`spec.broker` names AmqpBroker/edge, which does not exist"), "{err}");
        let err = refused("protocol: mqtt, broker", "protocol: mqtt5, broker");
        assert!(err.contains("spec.protocol") && err.contains("unknown variant `mqtt5`"), "{err}");
        let err = refused("upstream: '127.0.0.1:1883'", "upstream: '127.0.0.1'");
        assert!(err.contains("MqttBroker/edge") && err.contains("`127.0.0.1` is not `host:port`"), "{err}");
        // Kafka's words are not MQTT's, and a topic pattern must be an MQTT topic filter.
        let err = refused("operations: [publish]", "operations: [describe]");
        assert!(
            err.contains("AuthorizationPolicy/sensors-topics") && err.contains("unknown operation `describe`"),
            "{err}"
        );
        let err = refused("topic:sensors/#", "topic:sensors/#/more");
        assert!(err.contains("AuthorizationPolicy/sensors-topics"), "{err}");
        // Logins a PeerAuthentication could not check are refused, not left unchecked.
        let err = refused("sasl: {credentials: /etc/weir/users.yaml}", "sasl: {mechanisms: [OAUTHBEARER]}");
        assert!(
            err.contains("PeerAuthentication/users selects this amqp workload, but its `sasl` has no `credentials`"),
            "{err}"
        );
        let err = refused(
            "sasl: {credentials: /etc/weir/users.yaml}",
            "sasl: {credentials: /u.yaml, mechanisms: [SCRAM-SHA-512]}",
        );
        assert!(err.contains("leave PLAIN out"), "{err}");
        // A broker in use stays.
        let err = state.delete(crate::Kind::MqttBroker, "edge", None).unwrap_err().to_string();
        assert_eq!(err, "MqttBroker/edge: in use by Workload/sensors (`spec.broker`); delete or move them first");
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
    const GATEWAYS: &str = "apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: devices}\nspec: {protocol: mqtt-gateway, cluster: main, listen: '127.0.0.1:11885', mappings: [{mqtt: 'sensors/+', kafka: sensors, key: '{1}'}]}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec: {protocol: http-gateway, cluster: main, listen: '127.0.0.1:18090', kafka: {delivery_timeout_ms: 5000}}\n---\napiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: web-tokens}\nspec: {selector: {workloads: [web]}, sasl: {oauthbearer: {jwks: /etc/weir/jwks.json, issuer: 'https://idp', audience: kafka}}}\n";

    #[test]
    fn a_gateway_gets_its_clusters_brokers_its_callers_and_the_kafka_rules_that_select_it() {
        let text = format!("{MESH}---\n{GATEWAYS}");
        let (state, _) = MeshState::default().apply(&parse_documents(&text, "t").unwrap()).unwrap();
        let devices = state.sidecar_config("devices").unwrap();
        assert_eq!(devices["protocol"], "mqtt-gateway");
        assert_eq!(devices["kafka"], serde_json::json!({"bootstrap": "b:9092"}));
        assert!(devices.get("upstream").is_none() && devices.get("bootstrap").is_none(), "{devices}");
        // The mesh-wide Kafka policy `a` selects it; MQTT policies would not.
        assert_eq!(devices["authorization"]["rules"].as_array().unwrap().len(), 1, "{devices}");
        let web = state.sidecar_config("web").unwrap();
        assert_eq!(web["kafka"], serde_json::json!({"bootstrap": "b:9092", "delivery_timeout_ms": 5000}));
        assert_eq!(web["bearer"]["issuer"], "https://idp");

        let refused = |find: &str, replace: &str| {
            let changed = text.replace(find, replace);
            assert_ne!(changed, text, "{find}");
            match parse_documents(&changed, "t") {
                Ok(resources) => state.apply(&resources).unwrap_err().to_string(),
                Err(err) => err.to_string(),
            }
        };
        let err = refused("kafka: {delivery_timeout_ms: 5000}", "kafka: {bootstrap: 'x:1'}");
        assert!(err.contains("spec.kafka.bootstrap") && err.contains("comes from the KafkaCluster"), "{err}");
        let err = refused("protocol: mqtt-gateway, cluster: main", "protocol: mqtt-gateway, broker: main");
        assert!(err.contains("spec.broker") && err.contains("names the KafkaCluster it reaches in `cluster`"), "{err}");
        let err = refused("upstream: {connect_timeout_ms: 500}", "upstream: {tls: {ca: /ca.pem}}");
        assert!(
            err.contains("Workload/devices")
                && err.contains("`upstream.tls`, which a gateway's Kafka client does not do"),
            "{err}"
        );
        let err = refused("mappings: [{mqtt: 'sensors/+', kafka: sensors, key: '{1}'}]", "mappings: []");
        assert!(err.contains("Workload/devices"), "{err}");
        let err = refused(
            "sasl: {oauthbearer: {jwks: /etc/weir/jwks.json, issuer: 'https://idp', audience: kafka}}",
            "sasl: {credentials: /u.yaml}",
        );
        assert!(err.contains("has no `oauthbearer`"), "{err}");
        let policy = "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: g}\nspec: {protocol: http-gateway, rules: []}\n";
        let err = parse_documents(policy, "t").unwrap_err().to_string();
        assert!(err.contains("judged by the Kafka policies"), "{err}");
    }
}
