//! Two `weir control` replicas sharing the mesh state through a compacted Kafka topic: writes
//! through either are serialized (none lost, none computed from a stale state), each serves
//! sidecars, and when one is killed under load its sidecars move to the other and take the
//! changes made there.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::control::{path_str, ControlPlane, ManagedSidecar};
use common::{direct_bootstrap, mesh_bootstrap, rd, unique};
use rdkafka::producer::FutureRecord;

fn resources(prefix: &str, listen: SocketAddr, admin: SocketAddr, broker_base: u16) -> String {
    let bootstrap: Vec<String> = mesh_bootstrap().split(',').map(|s| format!("'{s}'")).collect();
    format!(
        "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {{name: main}}\nspec:\n  bootstrap: [{}]\n  upstream: {{resolve: {{'*.weir.invalid': 127.0.0.1}}}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: orders}}\nspec: {{cluster: main, listen: '{listen}', admin: '{admin}', broker_ports: {{base: {broker_base}, count: 10}}}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: orders-identity}}\nspec: {{selector: {{workloads: [orders]}}, fixed_principal: orders}}\n---\n\
         apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: base}}\nspec: {{rules: [{{effect: allow, principals: [orders], resources: ['topic:{prefix}.*'], operations: [all]}}]}}\n",
        bootstrap.join(", ")
    )
}

/// A policy that changes nothing a client sees, named `name`.
fn extra_policy(name: &str) -> String {
    format!(
        "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\nspec: {{rules: [{{effect: allow, principals: [nobody], resources: ['topic:{name}'], operations: [read]}}]}}\n"
    )
}

fn version_of(plane: &ControlPlane) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&plane.ctl(&["get", "ap", "-o", "json"]).ok()).unwrap();
    json["version"].as_u64().unwrap()
}

fn policy_names(plane: &ControlPlane) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&plane.ctl(&["get", "ap", "-o", "json"]).ok()).unwrap();
    json["items"].as_array().unwrap().iter().map(|r| r["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

fn wait_version(plane: &ControlPlane, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while version_of(plane) < version {
        assert!(Instant::now() < deadline, "replica never reached version {version}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_kafka_share_the_mesh_and_one_can_die() {
    common::kafka();
    let prefix = unique("ha");
    let topic_store = format!("{prefix}.store");
    let store_args = ["--kafka-store", &direct_bootstrap(), "--kafka-store-topic", &topic_store];
    let mut first = ControlPlane::start_with(&store_args);
    let second = ControlPlane::replica_of(&first);

    let base = common::port_block();
    let listen: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", base + 19).parse().unwrap();
    let mesh = first.file("mesh.yaml", &resources(&prefix, listen, admin, base + 1));
    assert!(first.ctl(&["apply", "-f", path_str(&mesh)]).ok().ends_with("mesh version 1\n"));
    // The other replica reads it from the topic.
    wait_version(&second, 1);
    assert_eq!(
        second.ctl(&["get", "wl", "orders", "-o", "yaml"]).ok(),
        first.ctl(&["get", "wl", "orders", "-o", "yaml"]).ok()
    );

    // Writers on both replicas at once: every change lands, each on the one before it.
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let plane = if i % 2 == 0 { &first } else { &second };
            let file = plane.file(&format!("extra-{i}.yaml"), &extra_policy(&format!("extra-{i}")));
            common::control::apply_in_thread(plane, file)
        })
        .collect();
    for writer in writers {
        let output = writer.join().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    wait_version(&first, 7);
    wait_version(&second, 7);
    for plane in [&first, &second] {
        let names = policy_names(plane);
        assert_eq!(names.len(), 7, "the base policy and six extra: {names:?}");
        assert_eq!(version_of(plane), 7, "one version per change");
    }

    // A sidecar that knows both replicas, under load.
    let mut sidecar = ManagedSidecar::spawn(&first, "orders", admin);
    sidecar.kill();
    sidecar.set_replicas(&[&first, &second]);
    sidecar.restart();
    sidecar.wait_ready();
    let topic = format!("{prefix}.orders");
    rd::create_topic(&listen.to_string(), &topic, 1).await;
    let producer = rd::producer(&listen.to_string(), &[]);
    let send = |n: usize| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(FutureRecord::<(), _>::to(&topic).payload(&format!("r{n}")), Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        }
    };
    send(0).await.unwrap();

    first.kill();
    sidecar.wait_log("control plane stream down", Duration::from_secs(10));
    for n in 1..20 {
        send(n).await.unwrap();
    }
    // A change through the surviving replica reaches the sidecar: it moved there.
    let denial = second.file("deny.yaml", &format!(
        "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-orders}}\nspec: {{rules: [{{effect: deny, principals: [orders], resources: ['topic:{topic}'], operations: [write]}}]}}\n"
    ));
    assert!(second.ctl(&["apply", "-f", path_str(&denial)]).ok().ends_with("mesh version 8\n"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 20;
    while send(n).await.is_ok() {
        assert!(Instant::now() < deadline, "the sidecar did not take the change made on the other replica");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = second.ctl(&["status"]).ok();
        if status.lines().any(|l| l.contains(" orders ") && l.contains("connected") && l.contains("ACK v8")) {
            break;
        }
        assert!(Instant::now() < deadline, "status on the surviving replica: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The dead replica comes back with everything, including what it missed.
    first.restart();
    wait_version(&first, 8);
    assert!(policy_names(&first).contains(&"deny-orders".to_owned()));
}
