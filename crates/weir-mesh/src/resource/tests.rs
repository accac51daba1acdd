use super::*;

const CLUSTER: &str =
    "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['127.0.0.1:9092']}\n";

fn error(text: &str) -> String {
    parse_documents(text, "mesh.yaml").unwrap_err().to_string()
}

#[test]
fn reads_several_documents_and_skips_empty_ones() {
    let text = format!("{CLUSTER}---\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: orders, labels: {{app: orders}}}}\nspec: {{cluster: main, listen: '127.0.0.1:19092'}}\n");
    let resources = parse_documents(&text, "mesh.yaml").unwrap();
    assert_eq!(resources.iter().map(Resource::id).collect::<Vec<_>>(), ["KafkaCluster/main", "Workload/orders"]);
    assert_eq!(resources[1].metadata.labels["app"], "orders");
}

#[test]
fn errors_name_the_document_the_resource_and_the_field() {
    assert_eq!(
        error(&CLUSTER.replace("KafkaCluster", "KafkaClustr")),
        "KafkaClustr/main (mesh.yaml, document 1): at `kind`: unknown kind `KafkaClustr`; expected one of KafkaCluster, MqttBroker, AmqpBroker, Workload, AuthorizationPolicy, PeerAuthentication, CertificateRevocation"
    );
    assert_eq!(
        error(&CLUSTER.replace("weir/v1alpha1", "v1")),
        "KafkaCluster/main (mesh.yaml, document 1): at `apiVersion`: expected `weir/v1alpha1`, found `v1`"
    );
    assert!(error(&CLUSTER.replace("name: main", "name: Main_1"))
        .contains("at `metadata.name`: `Main_1` is not a valid name"));
    let unknown_field = error(&CLUSTER.replace("bootstrap:", "bootstrp:"));
    assert!(
        unknown_field.starts_with(
            "KafkaCluster/main (mesh.yaml, document 1): at `spec.bootstrp`: unknown field `bootstrp`, expected"
        ),
        "{unknown_field}"
    );
    let bad_port = error(&CLUSTER.replace("127.0.0.1:9092", "127.0.0.1"));
    assert_eq!(
        bad_port,
        "KafkaCluster/main (mesh.yaml, document 1): at `spec.bootstrap[0]`: `127.0.0.1` is not `host:port`"
    );
    let second = format!("{CLUSTER}---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: w}}\nspec: {{cluster: main, listen: nowhere}}\n");
    let bad_listen = error(&second);
    assert!(bad_listen.starts_with("Workload/w (mesh.yaml, document 2): at `spec.listen`:"), "{bad_listen}");
    let missing = error("apiVersion: weir/v1alpha1\nkind: Workload\n");
    assert!(missing.starts_with("mesh.yaml, document 1: at `.`: missing field `metadata`"), "{missing}");
    let syntax = error("kind: [unclosed\n");
    assert!(syntax.starts_with("mesh.yaml: at `.`:"), "{syntax}");
}

#[test]
fn a_policy_rule_error_names_the_rule() {
    let text = "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    - {effect: allow, principals: ['*'], resources: ['topic:a'], operations: [read]}\n    - {effect: allow, principals: ['*'], resources: ['topic:a'], operations: [raed]}\n";
    let err = error(text);
    assert!(
        err.starts_with(
            "AuthorizationPolicy/p (mesh.yaml, document 1): at `spec.rules[1].operations[0]`: unknown operation `raed`"
        ),
        "{err}"
    );
}

#[test]
fn yaml_out_reads_back_the_same() {
    let resources = parse_documents(&format!("{CLUSTER}---\n{}", CLUSTER.replace("main", "edge")), "x").unwrap();
    let text = to_yaml(&resources);
    assert_eq!(parse_documents(&text, "y").unwrap(), resources);
}

#[test]
fn kinds_as_people_type_them() {
    for text in ["Workload", "workload", "workloads", "wl", "WORKLOADS"] {
        assert_eq!(Kind::parse(text), Some(Kind::Workload), "{text}");
    }
    assert_eq!(Kind::parse("authorizationpolicies"), None, "only a trailing s is a plural here");
    assert_eq!(Kind::parse("ap"), Some(Kind::AuthorizationPolicy));
    for (text, kind) in [("mb", Kind::MqttBroker), ("MqttBrokers", Kind::MqttBroker), ("ab", Kind::AmqpBroker)] {
        assert_eq!(Kind::parse(text), Some(kind), "{text}");
    }
    assert_eq!(Kind::parse_exact("workload"), None, "a resource spells its kind exactly");
}

#[test]
fn yaml_1_1_booleans_stay_names() {
    let text = "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{effect: allow, principals: [y, no, on], resources: ['topic:a'], operations: [read]}]\n";
    let resources = parse_documents(text, "t").unwrap();
    assert_eq!(resources[0].spec["rules"][0]["principals"], serde_json::json!(["y", "no", "on"]));
}
