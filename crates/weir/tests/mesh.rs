//! The mesh with real processes: `weir control`, `weir proxy --control` sidecars, a real Kafka
//! cluster and real clients. A policy applied with `weir ctl` reaches live clients without a
//! reconnect; a snapshot a sidecar cannot use is NACKed and changes nothing; sidecars keep
//! serving when the control plane is down and start from their last good snapshot.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::control::{edge, path_str, ControlPlane, ManagedSidecar};
use common::{mesh_bootstrap, rd, unique};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

/// A mesh of one cluster and one workload `orders` (principal `orders`, from its
/// PeerAuthentication), whose sidecar listens on its own port block.
struct Mesh {
    plane: ControlPlane,
    listen: SocketAddr,
    admin: SocketAddr,
    prefix: String,
}

impl Mesh {
    fn new() -> Self {
        common::kafka();
        Self::with_plane(ControlPlane::start())
    }

    fn with_plane(plane: ControlPlane) -> Self {
        let base = common::port_block();
        let listen: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", base + 19).parse().unwrap();
        let mesh = Mesh { plane, listen, admin, prefix: unique("mesh") };
        let bootstrap: Vec<String> = mesh_bootstrap().split(',').map(|s| format!("'{s}'")).collect();
        let resources = format!(
            "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {{name: main}}\nspec:\n  bootstrap: [{}]\n  upstream: {{resolve: {{'*.weir.invalid': 127.0.0.1}}}}\n---\n\
             apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: orders, labels: {{team: shop}}}}\nspec:\n  cluster: main\n  listen: {listen}\n  admin: {admin}\n  broker_ports: {{base: {}, count: 10}}\n---\n\
             apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: orders-identity}}\nspec: {{selector: {{workloads: [orders]}}, fixed_principal: orders}}\n",
            bootstrap.join(", "),
            base + 1
        );
        mesh.plane.ctl(&["apply", "-f", path_str(&mesh.plane.file("mesh.yaml", &resources))]).ok();
        mesh.policy(&["write", "describe", "create"]);
        mesh
    }

    fn topic(&self) -> String {
        format!("{}.orders", self.prefix)
    }

    /// Applies the workload's policy: `orders` may do `operations` on the scenario's topics.
    fn policy(&self, operations: &[&str]) -> String {
        let text = format!(
            "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: orders-topics}}\nspec:\n  selector: {{match_labels: {{team: shop}}}}\n  rules:\n    - {{effect: allow, principals: [orders], resources: ['topic:{}.*'], operations: [{}]}}\n",
            self.prefix,
            operations.join(", ")
        );
        self.plane.ctl(&["apply", "-f", path_str(&self.plane.file("policy.yaml", &text))]).ok()
    }

    fn sidecar(&self) -> ManagedSidecar {
        let sidecar = ManagedSidecar::spawn(&self.plane, "orders", self.admin);
        sidecar.wait_ready();
        sidecar
    }

    fn bootstrap(&self) -> String {
        self.listen.to_string()
    }

    /// `weir ctl status` until `orders` reports `expected` in its CONFIG column.
    fn wait_status(&self, expected: &str) -> String {
        self.plane.wait_status("orders", expected)
    }
}

async fn send_one(producer: &rdkafka::producer::FutureProducer, topic: &str) -> Option<RDKafkaErrorCode> {
    match producer.send(FutureRecord::<(), _>::to(topic).payload("x"), Duration::from_secs(10)).await {
        Ok(_) => None,
        Err((KafkaError::MessageProduction(code), _)) => Some(code),
        Err((other, _)) => panic!("unexpected producer error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applied_with_ctl_reaches_live_clients_without_a_reconnect() {
    let mesh = Mesh::new();
    let sidecar = mesh.sidecar();
    let status = mesh.wait_status("ACK v");
    assert!(status.contains("connected"), "{status}");

    // librdkafka and the Java client, each with its connections open.
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    assert_eq!(send_one(&producer, &topic).await, None);
    let stop_file = mesh.plane.data_dir.with_extension("stop-java");
    let java_log = mesh.plane.data_dir.with_extension("java.log");
    let _ = std::fs::remove_file(&stop_file);
    let mut java = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", &common::classpath()])
        .arg(common::repo_root().join("tests/java/WeirClient.java"))
        .args([
            "produce-while",
            "--bootstrap",
            &mesh.bootstrap(),
            "--topic",
            &topic,
            "--stop-file",
            path_str(&stop_file),
        ])
        .args(["--property", "delivery.timeout.ms=5000", "--property", "request.timeout.ms=4000"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&java_log).unwrap())
        .spawn()
        .expect("java");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (lines, stdout) = (lines.clone(), java.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let wait_java = |what: &str, from: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = lines.lock().unwrap().clone();
            if let Some(at) = seen.iter().skip(from).position(|l| l.contains(what)) {
                return from + at;
            }
            let log = std::fs::read_to_string(&java_log).unwrap_or_default();
            assert!(Instant::now() < deadline, "the Java producer never printed {what:?}: {seen:?}\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first_ok = wait_java(" ok", 0);
    let connections = sidecar.metric("weir_connections_accepted_total", &[]);

    // Write is withdrawn: both clients get authorization errors on their open connections.
    let applied = mesh.policy(&["describe", "create"]);
    assert!(applied.contains("AuthorizationPolicy/orders-topics configured"), "{applied}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while send_one(&producer, &topic).await != Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
        assert!(Instant::now() < deadline, "librdkafka was not denied within 10 s of the apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let denied = wait_java("error=TopicAuthorizationException", first_ok);
    // And given back.
    mesh.policy(&["write", "describe", "create"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while send_one(&producer, &topic).await.is_some() {
        assert!(Instant::now() < deadline, "librdkafka was not allowed again within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_java(" ok", denied);
    std::fs::write(&stop_file, "").unwrap();
    assert!(java.wait().unwrap().success());
    reader.join().unwrap();
    assert_eq!(
        sidecar.metric("weir_connections_accepted_total", &[]),
        connections,
        "no client reconnected to pick up a policy"
    );
    // Versions: 1 the mesh, 2 the first policy, 3 withdrawn, 4 given back.
    let status = mesh.wait_status("ACK v4");
    assert!(!status.contains("NACK"), "{status}");
    let _ = std::fs::remove_file(&stop_file);
    let _ = std::fs::remove_file(&java_log);
    sidecar.assert_quiet_except(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_sidecar_cannot_use_is_nacked_and_changes_nothing() {
    let mesh = Mesh::new();
    let sidecar = mesh.sidecar();
    mesh.wait_status("ACK v");
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    assert_eq!(send_one(&producer, &topic).await, None);

    // Client TLS from files that the sidecar's host does not have: valid as a resource, not
    // usable by the sidecar.
    let missing = mesh.plane.data_dir.with_extension("no-such-dir");
    let tls = format!(
        "apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: orders-identity}}\nspec:\n  selector: {{workloads: [orders]}}\n  fixed_principal: orders\n  tls: {{cert: {0}/cert.pem, key: {0}/key.pem}}\n",
        missing.display()
    );
    mesh.plane.ctl(&["apply", "-f", path_str(&mesh.plane.file("tls.yaml", &tls))]).ok();
    let status = mesh.wait_status("NACK v3");
    assert!(status.contains("cert.pem"), "the NACK says why: {status}");
    // Still plaintext, still the old policy: the open producer keeps working.
    assert_eq!(send_one(&producer, &topic).await, None);
    assert_eq!(send_one(&rd::producer(&mesh.bootstrap(), &[]), &topic).await, None, "new connections too");
    assert!(sidecar.logs().iter().any(|l| l.contains("configuration from the control plane refused")));
    sidecar.assert_quiet_except(&["configuration from the control plane refused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_serve_without_the_control_plane_and_restart_from_their_last_snapshot() {
    let mut mesh = Mesh::new();
    let mut sidecar = mesh.sidecar();
    mesh.wait_status("ACK v2");
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    assert_eq!(send_one(&producer, &topic).await, None);

    // The control plane dies: the sidecar keeps serving with what it has.
    mesh.plane.kill();
    sidecar.wait_log("control plane stream down", Duration::from_secs(10));
    for _ in 0..5 {
        assert_eq!(send_one(&producer, &topic).await, None);
    }
    // The sidecar restarts meanwhile: it starts from its last good snapshot.
    sidecar.kill();
    sidecar.restart();
    sidecar.wait_ready();
    sidecar.wait_log("starting from the last one applied", Duration::from_secs(1));
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    assert_eq!(send_one(&producer, &topic).await, None);
    // The policy of that snapshot holds: a topic outside it is refused.
    let outside = unique("outside");
    assert_eq!(send_one(&producer, &outside).await, Some(RDKafkaErrorCode::TopicAuthorizationFailed));

    // The control plane returns, with a change made while... it was away from the sidecar.
    mesh.plane.restart();
    mesh.policy(&["describe", "create"]);
    mesh.wait_status("ACK v3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while send_one(&producer, &topic).await != Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
        assert!(Instant::now() < deadline, "the re-synced sidecar did not apply the new policy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_name_the_workload_and_are_renewed_without_a_reconnect() {
    common::kafka();
    // Twenty-second certificates: renewed at fourteen.
    let plane = ControlPlane::start_with(&["--cert-ttl-seconds", "20", "--trust-domain", "weir.test"]);
    let mesh = Mesh::with_plane(plane);
    let sidecar = mesh.sidecar();
    let first = sidecar.kept_identity().expect("a certificate kept in the state dir");
    assert_eq!(first["spiffe_id"], "spiffe://weir.test/ns/default/sa/orders");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sidecar.state_dir.join("orders.identity.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the key is the owner's only");
    let status = mesh.wait_status("ACK v");
    assert!(status.contains("expires in 1") || status.contains("expires in 2"), "{status}");

    // Load through the renewal: a producer sending all along on its connections.
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    assert_eq!(send_one(&producer, &topic).await, None);
    let connections = sidecar.metric("weir_connections_accepted_total", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let renewed = loop {
        assert_eq!(send_one(&producer, &topic).await, None);
        let kept = sidecar.kept_identity().unwrap();
        if kept["not_after"] != first["not_after"] {
            break kept;
        }
        assert!(Instant::now() < deadline, "no renewal within 30 s of a 20 s certificate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(renewed["not_after"].as_u64() > first["not_after"].as_u64());
    assert_ne!(renewed["key_pem"], first["key_pem"], "a new key with each certificate");
    for _ in 0..5 {
        assert_eq!(send_one(&producer, &topic).await, None);
    }
    assert_eq!(sidecar.metric("weir_connections_accepted_total", &[]), connections, "no client reconnected");
    let streams = sidecar.logs().iter().filter(|l| l.contains("following the control plane")).count();
    assert_eq!(streams, 1, "the control stream was not reopened: {status}");
    sidecar.assert_quiet_except(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_join_token_or_another_workloads_certificate_gets_nothing() {
    let mesh = Mesh::new();
    let orders = mesh.sidecar();
    mesh.wait_status("ACK v");

    // A second workload whose sidecar has a wrong token: no certificate, no configuration.
    let base = common::port_block();
    let billing_admin: SocketAddr = format!("127.0.0.1:{}", base + 19).parse().unwrap();
    let billing = format!(
        "apiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {{name: billing}}\nspec: {{cluster: main, listen: '127.0.0.1:{base}', admin: '{billing_admin}', broker_ports: {{base: {}, count: 10}}}}\n",
        base + 1
    );
    mesh.plane.ctl(&["apply", "-f", path_str(&mesh.plane.file("billing.yaml", &billing))]).ok();
    let wrong_token = mesh.plane.file("wrong-token", "guess");
    let intruder = ManagedSidecar::spawn_with_token(&mesh.plane, "billing", billing_admin, &wrong_token);
    intruder.wait_log("wrong join token", Duration::from_secs(15));
    assert!(intruder.kept_identity().is_none());
    assert!(common::http_get(billing_admin, "/readyz").is_err(), "it serves nothing");

    // The same, holding orders' certificate as if it were billing's: refused by identity.
    let mut impostor = intruder;
    impostor.kill();
    std::fs::create_dir_all(&impostor.state_dir).unwrap();
    std::fs::copy(orders.state_dir.join("orders.identity.json"), impostor.state_dir.join("billing.identity.json"))
        .unwrap();
    impostor.restart();
    impostor.wait_log(
        "the certificate is spiffe://weir.local/ns/default/sa/orders, not spiffe://weir.local/ns/default/sa/billing",
        Duration::from_secs(15),
    );
    assert!(mesh.plane.logs().iter().any(|l| l.contains("its certificate is another workload's")));
    // The rightful sidecar is untouched.
    let status = mesh.wait_status("ACK v");
    assert!(!status.contains("billing"), "billing never got a configuration: {status}");
    orders.assert_quiet_except(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_shows_who_produces_and_consumes_what_and_what_was_denied() {
    let mesh = Mesh::new();
    mesh.policy(&["all"]);
    let sidecar = mesh.sidecar();
    mesh.wait_status("ACK v");
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    for _ in 0..20 {
        assert_eq!(send_one(&producer, &topic).await, None);
    }
    // A topic it may see but not write: the refused produce is a denied flow.
    let outside = format!("{}-readonly", mesh.prefix);
    rd::create_topic(&common::direct_bootstrap(), &outside, 1).await;
    // The same policy lets `orders` consume in its own groups.
    let describe_only = format!(
        "apiVersion: weir/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: readonly}}\nspec: {{rules: [{{effect: allow, principals: [orders], resources: ['topic:{outside}'], operations: [describe]}}, {{effect: allow, principals: [orders], resources: ['group:{}.*'], operations: [all]}}]}}\n",
        mesh.prefix
    );
    let applied = mesh.plane.ctl(&["apply", "-f", path_str(&mesh.plane.file("readonly.yaml", &describe_only))]).ok();
    let version = applied.trim().rsplit(' ').next().unwrap().to_owned();
    mesh.wait_status(&format!("ACK v{version}"));
    assert_eq!(send_one(&producer, &outside).await, Some(RDKafkaErrorCode::TopicAuthorizationFailed));
    // A consumer in a group, with a client id of its own: the edge names both.
    let group = format!("{}.billing", mesh.prefix);
    let consumed = rd::consume(&mesh.bootstrap(), &topic, &group, 20, &[("client.id", "billing-reader")]);
    assert_eq!(consumed.len(), 20);

    let (produced_to, consumed_from) = (format!("topic/main/{topic}"), format!("topic/main/{topic}"));
    let denied_to = format!("topic/main/{outside}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let graph = loop {
        let graph = mesh.plane.topology();
        let produced = edge(&graph, "workload/orders", &produced_to).is_some_and(|e| e["records"].as_u64() >= Some(20));
        let consumed = graph["edges"].as_array().unwrap().iter().any(|e| {
            e["from"] == consumed_from.as_str()
                && e["group"] == group.as_str()
                && e["client_id"] == "billing-reader"
                && e["records"].as_u64() >= Some(20)
        });
        let denied = edge(&graph, "workload/orders", &denied_to).is_some_and(|e| e["denied"].as_u64() >= Some(1));
        if produced && consumed && denied {
            break graph;
        }
        assert!(
            Instant::now() < deadline,
            "the topology never showed the three flows: {graph:#}\ncontrol plane:\n{}\nsidecar:\n{}",
            mesh.plane.logs().join("\n"),
            sidecar.logs().iter().filter(|l| !l.contains("DEBUG")).cloned().collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let produced = edge(&graph, "workload/orders", &produced_to).unwrap();
    assert_eq!((produced["direction"].as_str(), produced["principal"].as_str()), (Some("produce"), Some("orders")));
    assert_eq!((produced["client_id"].as_str(), produced["group"].as_str()), (Some("rdkafka"), Some("")));
    let table = mesh.plane.ctl(&["topology"]).ok();
    assert!(table.contains("CLIENT") && table.contains("billing-reader") && table.contains(&group), "{table}");
    let dot = mesh.plane.ctl(&["topology", "-o", "dot"]).ok();
    assert!(dot.contains(&format!("\"workload/orders\" -> \"{produced_to}\"")), "{dot}");
    assert!(dot.contains("color=red, style=dashed"), "the denied flow stands out: {dot}");

    // The page, in a real browser: it draws the same nodes and edges.
    let token = std::fs::read_to_string(mesh.plane.token_file()).unwrap();
    let url = format!("http://{}/ui#token={}", mesh.plane.api, token.trim());
    let dom = common::headless_chromium(&["--virtual-time-budget=6000", "--dump-dom", &url]);
    assert!(dom.contains("data-id=\"workload/orders\""), "no workload node in the page:\n{dom}");
    assert!(
        dom.contains(&format!("data-from=\"workload/orders\" data-to=\"{produced_to}\"")),
        "no produce edge:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-to=\"{denied_to}\"")) && dom.contains("edge produce denied"),
        "no denied edge:\n{dom}"
    );
    // A screenshot of the page for whoever wants to look (docs/topology.png is one of these).
    if let Some(shot) = std::env::var_os("WEIR_TOPOLOGY_SCREENSHOT") {
        common::headless_chromium(&[
            "--virtual-time-budget=6000",
            "--window-size=1100,420",
            &format!("--screenshot={}", shot.to_string_lossy()),
            &url,
        ]);
    }
    sidecar.assert_quiet_except(&[]);
}

/// A CA for the mesh signed by the test cluster's CA, as an operator would supply one (brokers
/// already trust the cluster's CA): `(certificate, key)` files.
fn mesh_intermediate_ca(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let pki = common::cluster_tls_dir();
    let root_key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let root = Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.join("ca.pem")).unwrap(), root_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "weir mesh intermediate (test)");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &root).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert_file, key_file) = (dir.join("intermediate.pem"), dir.join("intermediate.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_presents_its_workload_certificate_to_the_brokers() {
    common::kafka();
    let pki = common::cluster_tls_dir();
    let dir = std::env::temp_dir().join(format!("weir-mesh-ca-{}", std::process::id()));
    let (cert, key) = mesh_intermediate_ca(&dir);
    let bundle = pki.join("ca.pem");
    // Ten-second certificates (the shortest allowed): renewed at 7 s, during the test.
    let plane = ControlPlane::start_with(&[
        "--ca-cert",
        path_str(&cert),
        "--ca-key",
        path_str(&key),
        "--ca-bundle",
        path_str(&bundle),
        "--cert-ttl-seconds",
        "10",
    ]);
    let mesh = Mesh::with_plane(plane);
    // The brokers' TLS listener that requires a client certificate from the cluster's CA; the
    // sidecar has no certificate file of its own, only its workload certificate.
    let tls_bootstrap: Vec<String> = (0..3).map(|i| format!("'127.0.0.1:{}'", 9096 + 10 * i)).collect();
    let cluster = format!(
        "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {{name: main}}\nspec:\n  bootstrap: [{}]\n  upstream: {{resolve: {{'*.weir.invalid': 127.0.0.1}}, tls: {{ca: '{}', workload_identity: true}}}}\n",
        tls_bootstrap.join(", "),
        bundle.display()
    );
    mesh.plane.ctl(&["apply", "-f", path_str(&mesh.plane.file("tls-cluster.yaml", &cluster))]).ok();
    // Sidecars verify the control plane with the supplied bundle (where the harness looks).
    std::fs::create_dir_all(mesh.plane.data_dir.join("ca")).unwrap();
    std::fs::copy(&bundle, mesh.plane.data_dir.join("ca/bundle.pem")).unwrap();
    let sidecar = mesh.sidecar();
    mesh.wait_status("ACK v");
    let topic = mesh.topic();
    rd::create_topic(&mesh.bootstrap(), &topic, 1).await;
    let producer = rd::producer(&mesh.bootstrap(), &[]);
    for _ in 0..10 {
        assert_eq!(send_one(&producer, &topic).await, None);
    }
    // What it presented is its workload certificate, chained to the cluster's CA through the
    // mesh's intermediate.
    let presented = std::fs::read_to_string(sidecar.state_dir.join("orders.cert.pem")).unwrap();
    assert_eq!(presented.matches("BEGIN CERTIFICATE").count(), 2, "leaf and intermediate: {presented}");
    assert!(presented.contains(&std::fs::read_to_string(&cert).unwrap().trim().to_owned()));

    // Renewed: new broker connections present the new certificate, open ones carry on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(sidecar.state_dir.join("orders.cert.pem")).unwrap() == presented {
        assert!(Instant::now() < deadline, "the workload certificate was not renewed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sidecar.logs().iter().any(|l| l.contains("renewed workload certificate is used for new broker connections"))
    {
        assert!(
            Instant::now() < deadline,
            "the renewal did not reach TLS towards the brokers:\n{}",
            sidecar.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(send_one(&producer, &topic).await, None, "the open connections carry on");
    let fresh = rd::producer(&mesh.bootstrap(), &[]);
    for _ in 0..10 {
        assert_eq!(send_one(&fresh, &topic).await, None, "new connections use the new certificate");
    }
    sidecar.assert_quiet_except(&[]);
    let _ = std::fs::remove_dir_all(&dir);
}
