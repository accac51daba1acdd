//! `weir control` and `weir ctl` as separate processes: resources applied, listed, diffed and
//! deleted; invalid and conflicting changes refused whole; the state surviving a crash.
//! (No Kafka needed: the sidecars' side of the control plane has its own scenarios.)

mod common;

use common::control::{path_str, ControlPlane};

const CLUSTER: &str = "apiVersion: weir/v1alpha1
kind: KafkaCluster
metadata:
  name: main
spec:
  bootstrap: ['127.0.0.1:9093']
  upstream:
    resolve: {'*.weir.invalid': 127.0.0.1}
";

const WORKLOAD: &str = "apiVersion: weir/v1alpha1
kind: Workload
metadata:
  name: orders
  labels: {team: shop}
spec:
  cluster: main
  listen: 127.0.0.1:19092
";

const POLICY: &str = "apiVersion: weir/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: shop-topics
spec:
  selector: {match_labels: {team: shop}}
  rules:
    - {effect: allow, principals: ['*'], resources: ['topic:orders.*', 'group:*'], operations: [all]}
";

fn mesh_dir(plane: &ControlPlane) -> String {
    plane.file("mesh/01-cluster.yaml", CLUSTER);
    plane.file("mesh/02-workload.yml", WORKLOAD);
    let policy = plane.file("mesh/03-policy.yaml", POLICY);
    plane.file("mesh/README.md", "not a resource: skipped");
    path_str(policy.parent().unwrap()).to_owned()
}

#[test]
fn apply_get_describe_diff_delete() {
    let plane = ControlPlane::start();
    let dir = mesh_dir(&plane);
    let applied = plane.ctl(&["apply", "-f", &dir]).ok();
    assert_eq!(
        applied,
        "KafkaCluster/main created\nWorkload/orders created\nAuthorizationPolicy/shop-topics created\nmesh version 1\n"
    );
    // The same again changes nothing, not even the version.
    let again = plane.ctl(&["apply", "-f", &dir]).ok();
    assert!(again.contains("Workload/orders unchanged") && again.ends_with("mesh version 1\n"), "{again}");

    let table = plane.ctl(&["get", "workloads"]).ok();
    assert_eq!(
        table,
        "NAME     VERSION   REACHES             LABELS\norders   1         KafkaCluster/main   team=shop\n"
    );
    let policies = plane.ctl(&["get", "ap"]).ok();
    assert!(
        policies.contains("shop-topics   1         orders"),
        "the policy selects the workload by label: {policies}"
    );

    // What `get -o yaml` prints applies back unchanged (through stdin).
    let yaml = plane.ctl(&["get", "kc", "main", "-o", "yaml"]).ok();
    assert!(yaml.contains("resourceVersion: \"1\""), "{yaml}");
    let back = plane.ctl_with_stdin(&["apply", "-f", "-"], Some(&yaml)).ok();
    assert_eq!(back, "KafkaCluster/main unchanged\nmesh version 1\n");
    let json: serde_json::Value =
        serde_json::from_str(&plane.ctl(&["get", "workload", "orders", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["spec"]["listen"], "127.0.0.1:19092");

    let described = plane.ctl(&["describe", "workload", "orders"]).ok();
    assert!(described.contains("#   reaches: KafkaCluster/main"), "{described}");
    assert!(described.contains("#   authorization policies: shop-topics"), "{described}");

    // diff: nothing to change → exit 0; a change → exit 1, the line diff and what apply would do.
    let same = plane.ctl(&["diff", "-f", &dir]);
    assert_eq!(same.code, 0, "{same:?}");
    let changed = plane.file("changed.yaml", &CLUSTER.replace("9093", "9103"));
    let diff = plane.ctl(&["diff", "-f", path_str(&changed)]);
    assert_eq!(diff.code, 1, "{diff:?}");
    assert!(diff.stdout.contains("-   - 127.0.0.1:9093\n+   - 127.0.0.1:9103\n"), "{}", diff.stdout);
    assert!(diff.stdout.contains("KafkaCluster/main configured (dry run)"), "{}", diff.stdout);
    let unchanged = plane.ctl(&["get", "kc", "main", "-o", "yaml"]).ok();
    assert!(unchanged.contains("9093"), "diff changed nothing: {unchanged}");

    // Deleting the cluster while a workload uses it is refused; in order it works.
    let in_use = plane.ctl(&["delete", "kafkacluster", "main"]).refused();
    assert_eq!(
        in_use,
        "weir ctl: KafkaCluster/main: in use by Workload/orders (`spec.cluster`); delete or move them first\n"
    );
    assert_eq!(plane.ctl(&["delete", "wl", "orders"]).ok(), "Workload/orders deleted\nmesh version 2\n");
    assert_eq!(plane.ctl(&["delete", "kc", "main"]).ok(), "KafkaCluster/main deleted\nmesh version 3\n");
    assert_eq!(plane.ctl(&["get", "wl"]).ok(), "no Workload resources (mesh version 3)\n");
    let gone = plane.ctl(&["get", "kc", "main"]).refused();
    assert_eq!(gone, "weir ctl: KafkaCluster/main: not found\n");
}

#[test]
fn an_invalid_change_is_refused_whole() {
    let plane = ControlPlane::start();
    plane.ctl(&["apply", "-f", path_str(&plane.file("cluster.yaml", CLUSTER))]).ok();

    // A typo in the second document: nothing of the first is applied either.
    let bad = plane.file("bad.yaml", &format!("{WORKLOAD}---\n{}", POLICY.replace("operations:", "operation:")));
    let refused = plane.ctl(&["apply", "-f", path_str(&bad)]).refused();
    assert!(
        refused.starts_with(&format!(
            "weir ctl: AuthorizationPolicy/shop-topics ({}, document 2): at `spec.rules[0].operation`: unknown field `operation`",
            bad.display()
        )),
        "{refused}"
    );
    // A reference only the whole mesh can check, refused by the control plane.
    let orphan =
        plane.file("orphan.yaml", &format!("{POLICY}---\n{}", WORKLOAD.replace("cluster: main", "cluster: nowhere")));
    let refused = plane.ctl(&["apply", "-f", path_str(&orphan)]).refused();
    assert_eq!(refused, "weir ctl: Workload/orders: `spec.cluster` names KafkaCluster/nowhere, which does not exist\n");
    // Each refusal left the mesh as it was.
    assert_eq!(plane.ctl(&["get", "ap"]).ok(), "no AuthorizationPolicy resources (mesh version 1)\n");
    assert_eq!(plane.ctl(&["get", "wl"]).ok(), "no Workload resources (mesh version 1)\n");

    for (text, expected) in [
        ("kind: [unclosed\n", "at `.`:"),
        (
            &CLUSTER.replace("KafkaCluster", "Kafka"),
            "unknown kind `Kafka`; expected one of KafkaCluster, MqttBroker, AmqpBroker, Workload",
        ),
        (
            &CLUSTER.replace("bootstrap: ['127.0.0.1:9093']", "bootstrap: []"),
            "at `spec.bootstrap`: at least one `host:port` is required",
        ),
        (&WORKLOAD.replace("127.0.0.1:19092", "localhost"), "at `spec.listen`:"),
        (
            &POLICY.replace("topic:orders.*", "topc:orders"),
            "at `spec.rules[0].resources[0]`: `topc:orders` is not a resource",
        ),
    ] {
        let file = plane.file("broken.yaml", text);
        let refused = plane.ctl(&["apply", "-f", path_str(&file)]).refused();
        assert!(refused.contains(expected), "expected {expected:?} in {refused}");
        assert!(refused.contains("broken.yaml"), "the error names the file: {refused}");
    }
    let empty = plane.ctl(&["apply", "-f", path_str(&plane.file("empty.yaml", "# nothing\n"))]).refused();
    assert!(empty.contains("no resources in"), "{empty}");
}

#[test]
fn concurrent_writers_cannot_lose_each_others_updates() {
    let plane = ControlPlane::start();
    plane.ctl(&["apply", "-f", path_str(&plane.file("cluster.yaml", CLUSTER))]).ok();

    // Two people read version 1 and edit it; the second one to write is told, not overwritten.
    let seen = plane.ctl(&["get", "kc", "main", "-o", "yaml"]).ok();
    let first = plane.file("first.yaml", &seen.replace("9093", "9103"));
    let second = plane.file("second.yaml", &seen.replace("9093", "9203"));
    assert!(plane.ctl(&["apply", "-f", path_str(&first)]).ok().contains("KafkaCluster/main configured"));
    let conflict = plane.ctl(&["apply", "-f", path_str(&second)]).refused();
    assert_eq!(
        conflict,
        "weir ctl: KafkaCluster/main: changed since resourceVersion 1 (now 2); get it again and reapply\n"
    );
    assert!(plane.ctl(&["get", "kc", "main", "-o", "yaml"]).ok().contains("9103"), "the first writer's change stands");
    let stale_delete = plane.ctl(&["delete", "kc", "main", "--resource-version", "1"]).refused();
    assert!(stale_delete.contains("changed since resourceVersion 1 (now 2)"), "{stale_delete}");

    // Many writers at once: every change lands, each with its own version.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let file = plane.file(&format!("w{i}.yaml"), &WORKLOAD.replace("name: orders", &format!("name: w{i}")));
            common::control::apply_in_thread(&plane, file)
        })
        .collect();
    for writer in writers {
        let output = writer.join().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let table = plane.ctl(&["get", "wl"]).ok();
    assert_eq!(table.lines().count(), 9, "all eight workloads: {table}");
    let versions: std::collections::BTreeSet<&str> =
        table.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(versions.len(), 8, "each write got its own version: {table}");
    let json: serde_json::Value = serde_json::from_str(&plane.ctl(&["get", "wl", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["version"], 10);
}

#[test]
fn the_state_survives_a_crash_and_one_process_owns_the_directory() {
    let mut plane = ControlPlane::start();
    let dir = mesh_dir(&plane);
    plane.ctl(&["apply", "-f", &dir]).ok();
    let before = plane.ctl(&["get", "wl", "-o", "json"]).ok();

    let second = plane.second_instance();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is in use by another `weir control`"), "{stderr}");

    plane.kill();
    plane.restart();
    assert_eq!(plane.ctl(&["get", "wl", "-o", "json"]).ok(), before);
    assert!(
        plane.ctl(&["apply", "-f", &dir]).ok().ends_with("mesh version 1\n"),
        "nothing to change after the restart"
    );
}

#[test]
fn the_api_needs_its_token() {
    let plane = ControlPlane::start();
    let wrong = plane.ctl(&["--token", "guess", "get", "kc"]).refused();
    assert!(wrong.contains("a valid `Authorization: Bearer TOKEN` is required"), "{wrong}");
    let (status, body) = common::http_get(plane.api, "/api/v1/resources").unwrap();
    assert_eq!(status, 401, "{body}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(plane.token_file()).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "only the owner reads the token");
    let unreachable = plane.ctl(&["--server", "127.0.0.1:1", "get", "kc"]).refused();
    assert!(unreachable.contains("cannot reach the control plane at 127.0.0.1:1"), "{unreachable}");
}

#[test]
fn the_example_mesh_applies() {
    let plane = ControlPlane::start();
    let examples = common::repo_root().join("examples/mesh");
    let applied = plane.ctl(&["apply", "-f", path_str(&examples)]).ok();
    assert_eq!(applied.lines().filter(|l| l.ends_with(" created")).count(), 6, "{applied}");
    let described = plane.ctl(&["describe", "workload", "billing"]).ok();
    assert!(described.contains("#   authorization policies: orders-flow"), "{described}");
    assert!(described.contains("#   peer authentication: billing-identity"), "{described}");
}

/// One raw HTTP/1.1 request to the API; (status, body).
fn raw_request(plane: &ControlPlane, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(plane.token_file()).unwrap();
    let mut stream = std::net::TcpStream::connect(plane.api).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.trim(),
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A body the server refuses early may not all be read; that is its right.
    let _ = stream.write_all(body);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    // The refusal's message, or the body as it came.
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    (status, message)
}

#[test]
fn bad_requests_to_the_api_get_clear_errors_and_change_nothing() {
    let plane = ControlPlane::start();
    plane.ctl(&["apply", "-f", path_str(&plane.file("cluster.yaml", CLUSTER))]).ok();
    for (body, expected) in [
        (&b"{not json"[..], "the body is not `{\"resources\": [...]}`"),
        (&b"{\"resources\": [{\"kind\": \"Workload\"}]}"[..], "resources[0]: missing field"),
        (&b"{\"resources\": [{\"apiVersion\": \"weir/v1alpha1\", \"kind\": \"KafkaCluster\", \"metadata\": {\"name\": \"main\"}, \"spec\": {\"bootstrap\": 7}}]}"[..], "at `spec.bootstrap`"),
    ] {
        let (status, answer) = raw_request(&plane, "POST", "/api/v1/apply", body);
        assert!(status == 400 || status == 422, "{status} {answer}");
        assert!(answer.contains(expected), "expected {expected:?} in {answer}");
    }
    let huge = vec![b' '; 9 * 1024 * 1024];
    let (status, answer) = raw_request(&plane, "POST", "/api/v1/apply", &huge);
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = raw_request(&plane, "GET", "/api/v1/resources/Gadget", b"");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("unknown kind `Gadget`"), "{answer}");
    let (status, _) = raw_request(&plane, "PUT", "/api/v1/apply", b"");
    assert_eq!(status, 404);
    // Nothing of that reached the state, and the control plane still serves.
    let json: serde_json::Value = serde_json::from_str(&plane.ctl(&["get", "kc", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["items"][0]["spec"]["bootstrap"][0], "127.0.0.1:9093");
}

#[test]
fn ctl_token_gives_a_workload_its_own_join_token_and_ctl_revoke_stores_a_revocation() {
    let plane = ControlPlane::start();
    plane.ctl(&["apply", "-f", &mesh_dir(&plane)]).ok();
    let token = plane.ctl(&["token", "orders"]).ok();
    let token = token.trim();
    assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    // Only its digest is stored, in the Workload.
    let workload = plane.ctl(&["get", "wl", "orders", "-o", "json"]).ok();
    assert!(!workload.contains(token), "the token itself is not stored");
    let digest: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(workload.contains(&format!("\"join_token_sha256\": \"{digest}\"")), "{workload}");
    let unknown = plane.ctl(&["token", "billing"]).refused();
    assert!(unknown.contains("Workload/billing") && unknown.contains("not found"), "{unknown}");

    let revoked = plane.ctl(&["revoke", "orders"]).ok();
    assert!(revoked.starts_with("CertificateRevocation/orders-revoked-") && revoked.contains(" created"), "{revoked}");
    let listed = plane.ctl(&["get", "revocations"]).ok();
    assert!(listed.contains("orders's certificates issued before 20"), "{listed}");
}

#[test]
fn ctl_ca_rotates_the_root_in_two_steps() {
    let plane = ControlPlane::start();
    let before = plane.ctl(&["ca", "status"]).ok();
    assert!(
        before.contains("root: the control plane's own") && before.contains("rotation: none in progress"),
        "{before}"
    );
    assert_eq!(before.matches("CN=weir mesh root CA").count(), 1, "{before}");

    let rotating = plane.ctl(&["ca", "rotate"]).ok();
    assert_eq!(rotating.matches("CN=weir mesh root CA").count(), 2, "old and new: {rotating}");
    assert!(rotating.contains("rotation: started") && rotating.contains("none (ready to finish)"), "{rotating}");
    let bundle = std::fs::read_to_string(plane.data_dir.join("ca/bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "the bundle on disk holds both");
    let twice = plane.ctl(&["ca", "rotate"]).refused();
    assert!(twice.contains("already in progress"), "{twice}");

    let finished = plane.ctl(&["ca", "finish-rotation"]).ok();
    assert_eq!(finished.matches("CN=weir mesh root CA").count(), 1, "{finished}");
    assert!(finished.contains("rotation: none in progress"), "{finished}");
    let new_root = std::fs::read_to_string(plane.data_dir.join("ca/ca.pem")).unwrap();
    assert_eq!(std::fs::read_to_string(plane.data_dir.join("ca/bundle.pem")).unwrap(), new_root);
    assert!(!plane.data_dir.join("ca/previous.pem").exists());
    let nothing = plane.ctl(&["ca", "finish-rotation"]).refused();
    assert!(nothing.contains("no root rotation is in progress"), "{nothing}");
}
