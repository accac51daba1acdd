//! MQTT and AMQP workloads on the mesh: `weir control` holds an `MqttBroker` (the tests'
//! Mosquitto) or an `AmqpBroker` (the tests' RabbitMQ), a `Workload` of that protocol, the
//! `PeerAuthentication` whose users its clients log in as, and `AuthorizationPolicy`
//! resources in the protocol's words; `weir proxy --control` takes its protocol and whole
//! configuration from there. A policy applied with `weir ctl` reaches connections already open
//! (an MQTT publisher, an AMQP channel); a Kafka policy denying everything applies to neither;
//! the flows show in the mesh's topology.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::brokers::{mosquitto, mqtt_client, pika, rabbitmq, stopped, subscriber, RABBITMQ_LOGIN};
use common::control::{edge, ControlPlane, ManagedSidecar};
use common::{port_block, sasl_users_file, unique};
use weir_core::sasl::ScramMechanism;

/// A Kafka policy for every workload of the mesh that would refuse everything: MQTT and AMQP
/// workloads must not take it.
const KAFKA_DENY_ALL: &str = "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: kafka-deny-all}\nspec: {rules: [{effect: deny, principals: ['*'], resources: ['topic:*', 'group:*'], operations: [all]}]}\n";

/// A users file on the sidecar's host: each user's password is the name reversed.
fn users(plane: &ControlPlane, names: &[&str]) -> String {
    let dir = plane.data_dir.with_extension("users");
    std::fs::create_dir_all(&dir).unwrap();
    let users: Vec<(&str, String, ScramMechanism)> =
        names.iter().map(|n| (*n, n.chars().rev().collect(), ScramMechanism::Sha256)).collect();
    let refs: Vec<(&str, &str, ScramMechanism)> = users.iter().map(|(n, p, m)| (*n, p.as_str(), *m)).collect();
    sasl_users_file(&dir, &refs).display().to_string()
}

/// Polls `metric` on the sidecar until it reaches `at_least`.
fn wait_metric(sidecar: &ManagedSidecar, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.metric(name, labels) < at_least {
        assert!(Instant::now() < deadline, "{name}{labels:?} never reached {at_least}:\n{}", sidecar.logs().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_mqtt_workload_runs_the_control_planes_config_and_a_policy_change_reaches_an_open_publisher() {
    let plane = ControlPlane::start();
    let base = port_block();
    let (listen, admin) = (base, base + 19);
    let root = unique("mesh-mqtt");
    let users = users(&plane, &["sensor", "dash"]);
    let mesh = format!(
        "apiVersion: weir/v1alpha1\nkind: MqttBroker\nmetadata: {{name: edge}}\nspec: {{upstream: '{broker}'}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: sensors}}\nspec: {{protocol: mqtt, broker: edge, listen: '127.0.0.1:{listen}', admin: '127.0.0.1:{admin}', limits: {{connect_timeout_ms: 1500}}}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: sensors-users}}\nspec: {{selector: {{workloads: [sensors]}}, sasl: {{credentials: '{users}'}}}}\n---\n{KAFKA_DENY_ALL}",
        broker = mosquitto(),
    );
    plane.apply("mesh.yaml", &mesh);
    let policy = |sensor_may: &str| {
        format!(
            "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: sensors-topics}}\nspec:\n  protocol: mqtt\n  selector: {{workloads: [sensors]}}\n  rules:\n    - {{effect: allow, principals: ['User:sensor'], resources: ['topic:{root}/{sensor_may}'], operations: [publish]}}\n    - {{effect: allow, principals: ['User:dash'], resources: ['topic:{root}/#'], operations: [subscribe]}}\n"
        )
    };
    let applied = plane.apply("policy.yaml", &policy("+/temp"));
    assert!(applied.contains("AuthorizationPolicy/sensors-topics created"), "{applied}");

    let sidecar = ManagedSidecar::spawn(&plane, "sensors", format!("127.0.0.1:{admin}").parse().unwrap());
    sidecar.wait_ready();
    let status = plane.wait_status("sensors", "ACK v2");
    assert!(status.contains(&format!("127.0.0.1:{listen}")), "{status}");

    let mut dash = mqtt_client(listen, "dash", "mqttv5");
    dash.extend(["-t", &format!("{root}/#"), "-q", "1"].map(str::to_owned));
    let dash = subscriber(&dash);
    // One publisher connection, open throughout: each line it reads is a QoS 1 PUBLISH.
    let mut args = mqtt_client(listen, "sensor", "mqttv311");
    args.extend(["-t", &format!("{root}/a/humidity"), "-q", "1", "-l"].map(str::to_owned));
    let mut publisher = Command::new("mosquitto_pub").args(&args).stdin(Stdio::piped()).spawn().unwrap();
    let mut lines = publisher.stdin.take().unwrap();
    writeln!(lines, "before").unwrap();
    let denied = [("operation", "publish"), ("principal", "User:sensor")];
    wait_metric(&sidecar, "weir_mqtt_denied_total", &denied, 1.0);

    // The sensor may now publish anything under its root: the open connection is judged anew.
    let changed = plane.apply("policy.yaml", &policy("#"));
    assert!(changed.contains("AuthorizationPolicy/sensors-topics configured"), "{changed}");
    plane.wait_status("sensors", "ACK v3");
    writeln!(lines, "after").unwrap();
    let topic = format!("{root}/a/humidity");
    let delivered = [("direction", "deliver"), ("topic", topic.as_str()), ("principal", "User:dash")];
    wait_metric(&sidecar, "weir_mqtt_messages_total", &delivered, 1.0);
    drop(lines);
    let _ = publisher.wait();
    let (received, stderr) = stopped(dash);
    assert_eq!(received, [format!("{topic} after")], "{stderr}");
    assert_eq!(sidecar.metric("weir_mqtt_denied_total", &denied), 1.0);

    // The mesh's topology: who published to and who received from the topic, and the refusal.
    let (node, workload) = (format!("topic/edge/{topic}"), "workload/sensors");
    let graph = plane.topology_when(|g| {
        edge(g, &node, workload).is_some_and(|e| e["records"] == 1)
            && edge(g, workload, &node).is_some_and(|e| e["records"] == 1 && e["denied"] == 1)
    });
    let published = edge(&graph, workload, &node).unwrap();
    assert_eq!((&published["principal"], &published["bytes"]), (&"User:sensor".into(), &"after".len().into()));
    assert_eq!(edge(&graph, &node, workload).unwrap()["principal"], "User:dash");

    // Where it listens takes a restart, and `weir ctl status` says so.
    plane.apply("mesh.yaml", &mesh.replace("connect_timeout_ms: 1500", "connect_timeout_ms: 2500"));
    plane.wait_status("sensors", "restart to apply: limits");
    sidecar.assert_quiet_except(&[]);
}

#[test]
fn an_amqp_workload_runs_the_control_planes_config_and_a_policy_change_closes_a_channel_already_open() {
    let plane = ControlPlane::start();
    let base = port_block();
    let (listen, admin) = (base, base + 19);
    let p = unique("mesh-amqp");
    let users = users(&plane, &["app"]);
    let mesh = format!(
        "apiVersion: weir/v1alpha1\nkind: AmqpBroker\nmetadata: {{name: rabbit}}\nspec: {{upstream: '127.0.0.1:{broker}', broker_credentials: {RABBITMQ_LOGIN}}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: billing, labels: {{team: billing}}}}\nspec: {{protocol: amqp, broker: rabbit, listen: '127.0.0.1:{listen}', admin: '127.0.0.1:{admin}'}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: billing-users}}\nspec: {{selector: {{match_labels: {{team: billing}}}}, sasl: {{credentials: '{users}'}}}}\n---\n{KAFKA_DENY_ALL}",
        broker = rabbitmq(),
    );
    plane.apply("mesh.yaml", &mesh);
    let policy = |resources: &str| {
        format!(
            "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: billing-queues}}\nspec:\n  protocol: amqp\n  selector: {{match_labels: {{team: billing}}}}\n  rules:\n    - {{effect: allow, principals: ['User:app'], resources: [{resources}], operations: [all]}}\n"
        )
    };
    plane.apply("policy.yaml", &policy(&format!("'queue:{p}.*', 'exchange:amq.default'")));
    let sidecar = ManagedSidecar::spawn(&plane, "billing", format!("127.0.0.1:{admin}").parse().unwrap());
    sidecar.wait_ready();
    plane.wait_status("billing", "ACK v2");

    let steps: Vec<String> = ["queue:P.r", "publish::P.r:1", "sleep:6", "publish::P.r:1", "get:P.r"]
        .map(|s| s.replace("P.", &format!("{p}.")))
        .to_vec();
    let open = std::thread::spawn(move || pika(listen, "app", &steps, &[]));
    std::thread::sleep(Duration::from_millis(2000));
    // `app` loses the default exchange while its channel is open.
    plane.apply("policy.yaml", &policy(&format!("'queue:{p}.*'")));
    plane.wait_status("billing", "ACK v3");
    let lines = open.join().unwrap();
    let refused =
        "refused 403 ACCESS_REFUSED - write access to exchange 'amq.default' refused for User:app by the mesh's policy";
    let expected: Vec<String> = [
        "queue:P.r ok P.r".to_owned(),
        "publish::P.r:1 ok confirmed=1".to_owned(),
        "sleep:6 ok".to_owned(),
        format!("publish::P.r:1 {refused}"),
        "get:P.r ok P.r-0".to_owned(),
    ]
    .map(|s| s.replace("P.", &format!("{p}.")))
    .to_vec();
    assert_eq!(lines, expected);

    // The topology: `app` wrote to the default exchange (once allowed, once refused) and read
    // from its queue.
    let (exchange, queue) = ("topic/rabbit/exchange:amq.default".to_owned(), format!("topic/rabbit/queue:{p}.r"));
    let graph = plane.topology_when(|g| {
        edge(g, "workload/billing", &exchange).is_some_and(|e| e["records"] == 1 && e["denied"] == 1)
            && edge(g, &queue, "workload/billing").is_some_and(|e| e["records"] == 1)
    });
    assert_eq!(edge(&graph, &queue, "workload/billing").unwrap()["principal"], "User:app");

    // The password is checked by the sidecar against the PeerAuthentication's users.
    let wrong =
        common::python_script("amqp_client.py", &[&listen.to_string(), "app", "wrong", &format!("queue:{p}.q")]);
    let said = String::from_utf8_lossy(&wrong.stdout).into_owned();
    assert!(
        said.starts_with("login refused 403 ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"),
        "{said}"
    );
    sidecar.assert_quiet_except(&[]);
}
