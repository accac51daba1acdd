//! Gateways on the mesh: `weir control` holds a `KafkaCluster` (the test cluster, plaintext), an
//! `http-gateway` and an `mqtt-gateway` Workload naming it, the `PeerAuthentication` that names
//! their callers and the **Kafka** `AuthorizationPolicy` that judges them; `weir proxy
//! --control` takes a gateway's whole configuration from there. A policy change reaches the
//! running gateway (a topic it could not read becomes readable), and what its clients wrote and
//! read shows in the mesh's topology beside Kafka sidecars' flows.

mod common;

use std::process::Command;

use common::control::{edge, ControlPlane, ManagedSidecar};
use common::{direct_bootstrap, port_block, rd, unique};

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn gateways_run_the_control_planes_config_under_the_kafka_policy_and_show_in_the_topology() {
    common::kafka();
    let plane = ControlPlane::start();
    let root = unique("mesh-gw");
    let (orders, sensors) = (format!("{root}.orders"), format!("{root}.sensors"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        rd::create_topic(&direct_bootstrap(), &orders, 1).await;
        rd::create_topic(&direct_bootstrap(), &sensors, 1).await;
    });
    let (web, devices) = (port_block(), port_block());
    let bootstrap: Vec<String> = direct_bootstrap().split(',').map(|b| format!("'{b}'")).collect();
    let mesh = format!(
        "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {{name: direct}}\nspec: {{bootstrap: [{}]}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: web}}\nspec: {{protocol: http-gateway, cluster: direct, listen: '127.0.0.1:{web}', admin: '127.0.0.1:{}'}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: devices}}\nspec: {{protocol: mqtt-gateway, cluster: direct, listen: '127.0.0.1:{devices}', admin: '127.0.0.1:{}', mappings: [{{mqtt: 'sensors/+', kafka: '{sensors}', key: '{{1}}'}}], sessions: {{topic: '{root}.sessions'}}, retained: {{topic: '{root}.retained'}}}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: web-callers}}\nspec: {{selector: {{workloads: [web]}}, fixed_principal: web-svc}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: device-callers}}\nspec: {{selector: {{workloads: [devices]}}, fixed_principal: device}}\n",
        bootstrap.join(", "),
        web + 19,
        devices + 19,
    );
    let applied = plane.apply("mesh.yaml", &mesh);
    assert!(applied.contains("Workload/web created") && applied.contains("Workload/devices created"), "{applied}");
    let policy = |web_may: &str| {
        format!(
            "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: gateway-topics}}\nspec:\n  selector: {{workloads: [web, devices]}}\n  rules:\n    - {{effect: allow, principals: [web-svc], resources: ['topic:{orders}'], operations: [{web_may}]}}\n    - {{effect: allow, principals: [device], resources: ['topic:{sensors}'], operations: [write]}}\n"
        )
    };
    plane.apply("policy.yaml", &policy("write"));

    let http = ManagedSidecar::spawn(&plane, "web", format!("127.0.0.1:{}", web + 19).parse().unwrap());
    let mqtt = ManagedSidecar::spawn(&plane, "devices", format!("127.0.0.1:{}", devices + 19).parse().unwrap());
    http.wait_ready();
    mqtt.wait_ready();
    plane.wait_status("web", "ACK v2");
    plane.wait_status("devices", "ACK v2");

    // The HTTP gateway writes as web-svc, which may not read yet.
    let url = format!("http://127.0.0.1:{web}/topics/{orders}");
    let body = r#"{"records": [{"key": "o-1", "value": {"total": 12}}]}"#;
    let (status, answer) = curl(&["-X", "POST", &url, "-H", "Content-Type: application/json", "--data", body]);
    assert_eq!(status, 200, "{answer}");
    let events = format!("{url}/events?from=earliest");
    let (status, answer) = curl(&[&events]);
    assert!(status == 403 && answer.contains("web-svc may not read topic"), "{status} {answer}");
    // The MQTT gateway's device publishes (QoS 1: acknowledged once Kafka has it).
    let published = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &devices.to_string(), "-t", "sensors/7", "-q", "1", "-m", "21.5"])
        .output()
        .unwrap();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let records = rd::consume(&direct_bootstrap(), &sensors, &unique("check"), 1, &[]);
    assert_eq!((records[0].key.as_str(), records[0].value.as_str()), ("7", "21.5"));

    // The policy now lets web-svc read: the running gateway serves the stream.
    plane.apply("policy.yaml", &policy("write, read"));
    plane.wait_status("web", "ACK v3");
    let (_, stream) = curl(&["-N", "--max-time", "3", &format!("{events}&format=json")]);
    assert!(stream.contains(r#""value":{"total":12}"#), "{stream}");

    // The topology: who wrote to and read from which topic, through which gateway, and the
    // refusal, on the same topic nodes as Kafka sidecars' flows.
    let (order_node, web_node) = (format!("topic/direct/{orders}"), "workload/web");
    let sensor_node = format!("topic/direct/{sensors}");
    let graph = plane.topology_when(|g| {
        edge(g, web_node, &order_node).is_some_and(|e| e["records"] == 1)
            && edge(g, &order_node, web_node).is_some_and(|e| e["records"] == 1 && e["denied"] == 1)
            && edge(g, "workload/devices", &sensor_node).is_some_and(|e| e["records"] == 1)
    });
    assert_eq!(edge(&graph, web_node, &order_node).unwrap()["principal"], "web-svc");
    assert_eq!(edge(&graph, "workload/devices", &sensor_node).unwrap()["principal"], "device");
    http.assert_quiet_except(&[]);
    mqtt.assert_quiet_except(&[]);
}
