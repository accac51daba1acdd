use super::*;
use crate::resource::parse_documents;

fn resources(text: &str) -> Vec<Resource> {
    parse_documents(text, "test").unwrap()
}

const BASE: &str = "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:9092']}\n---\napiVersion: weir/v1alpha1\nkind: Workload\nmetadata: {name: orders, labels: {team: a}}\nspec: {cluster: main, listen: '127.0.0.1:19092'}\n";

fn actions(changes: &[Change]) -> Vec<(String, ChangeKind)> {
    changes.iter().map(|c| (format!("{}/{}", c.kind, c.name), c.action)).collect()
}

#[test]
fn apply_creates_then_reports_unchanged_then_configured() {
    let (one, changes) = MeshState::default().apply(&resources(BASE)).unwrap();
    assert_eq!(one.version, 1);
    assert_eq!(
        actions(&changes),
        [("KafkaCluster/main".into(), ChangeKind::Created), ("Workload/orders".into(), ChangeKind::Created)]
    );
    assert_eq!(one.get(Kind::Workload, "orders").unwrap().metadata.resource_version.as_deref(), Some("1"));

    let (same, changes) = one.apply(&resources(BASE)).unwrap();
    assert_eq!(same, one, "applying the same again changes nothing, not even the version");
    assert!(changes.iter().all(|c| c.action == ChangeKind::Unchanged));

    let (two, changes) = one.apply(&resources(&BASE.replace("b:9092", "c:9092"))).unwrap();
    assert_eq!(two.version, 2);
    assert_eq!(actions(&changes)[0], ("KafkaCluster/main".into(), ChangeKind::Configured));
    assert_eq!(two.get(Kind::KafkaCluster, "main").unwrap().metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(two.get(Kind::Workload, "orders").unwrap().metadata.resource_version.as_deref(), Some("1"));
}

#[test]
fn a_stale_resource_version_is_a_conflict_and_changes_nothing() {
    let (one, _) = MeshState::default().apply(&resources(BASE)).unwrap();
    // Writer A read version 1 and changed the cluster; writer B read version 1 too.
    let mut a = resources(&BASE.replace("b:9092", "a:9092"));
    a[0].metadata.resource_version = Some("1".into());
    let (two, _) = one.apply(&a).unwrap();
    let mut b = resources(&BASE.replace("b:9092", "z:9092"));
    b[0].metadata.resource_version = Some("1".into());
    let err = two.apply(&b).unwrap_err();
    assert_eq!(
        err,
        MeshError::Conflict { resource: "KafkaCluster/main".into(), expected: "1".into(), actual: "2".into() }
    );
    assert_eq!(err.status(), 409);
}

#[test]
fn a_batch_is_refused_whole() {
    let (one, _) = MeshState::default().apply(&resources(BASE)).unwrap();
    let mut batch = resources(&BASE.replace("b:9092", "new:9092"));
    batch.push(Resource { kind: "Workload".into(), ..batch[1].clone() });
    batch[2].metadata.name = "billing".into();
    batch[2].spec["cluster"] = "nowhere".into();
    let err = one.apply(&batch).unwrap_err();
    assert_eq!(err.to_string(), "Workload/billing: `spec.cluster` names KafkaCluster/nowhere, which does not exist");
    // `one` is untouched: the caller stores only what apply returns.
    assert_eq!(one.get(Kind::KafkaCluster, "main").unwrap().spec["bootstrap"][0], "b:9092");
}

#[test]
fn deleting_what_is_in_use_is_refused() {
    let (one, _) = MeshState::default().apply(&resources(BASE)).unwrap();
    let err = one.delete(Kind::KafkaCluster, "main", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "KafkaCluster/main: in use by Workload/orders (`spec.cluster`); delete or move them first"
    );
    let two = one.delete(Kind::Workload, "orders", Some("1")).unwrap();
    assert_eq!(two.version, 2);
    assert!(two.get(Kind::Workload, "orders").is_none());
    assert_eq!(two.delete(Kind::Workload, "orders", None).unwrap_err().status(), 404);
    assert_eq!(one.delete(Kind::Workload, "orders", Some("7")).unwrap_err().status(), 409);
}

#[test]
fn two_peer_authentications_for_one_workload_are_refused() {
    let (one, _) = MeshState::default().apply(&resources(BASE)).unwrap();
    let pa = "apiVersion: weir/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: NAME}\nspec: {selector: SELECTOR, fixed_principal: svc}\n";
    let batch = resources(&format!(
        "{}---\n{}",
        pa.replace("NAME", "by-name").replace("SELECTOR", "{workloads: [orders]}"),
        pa.replace("NAME", "by-label").replace("SELECTOR", "{match_labels: {team: a}}")
    ));
    let err = one.apply(&batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Workload/orders: selected by both PeerAuthentication/by-label and PeerAuthentication/by-name; at most one may apply"
    );
    assert!(one.apply(&batch[..1]).is_ok());
}

#[test]
fn selectors() {
    let labels = [("team".to_owned(), "a".to_owned())].into_iter().collect();
    assert!(Selector::default().selects("x", &labels), "empty selects all");
    let by_label = Selector { match_labels: labels.clone(), ..Selector::default() };
    assert!(by_label.selects("x", &labels));
    assert!(!by_label.selects("x", &Default::default()));
    let by_name = Selector { workloads: vec!["x".into()], ..Selector::default() };
    assert!(by_name.selects("x", &Default::default()));
    assert!(!by_name.selects("y", &labels));
}

#[test]
fn a_certificate_revocation_names_a_workload_and_a_time() {
    let revocation = |before: &str| {
        format!("apiVersion: weir/v1alpha1\nkind: CertificateRevocation\nmetadata: {{name: leak}}\nspec: {{workload: orders, issued_before: '{before}'}}\n")
    };
    let (base, _) = MeshState::default().apply(&resources(BASE)).unwrap();
    let err = parse_documents(&revocation("yesterday"), "test").unwrap_err().to_string();
    assert!(err.contains("CertificateRevocation/leak") && err.contains("spec.issued_before"), "{err}");
    assert!(err.contains("not an RFC 3339 time"), "{err}");

    let (revoked, _) = base.apply(&resources(&revocation("2026-12-02T06:00:00Z"))).unwrap();
    let before = crate::kinds::certificate_revocation::parse_time("2026-12-02T06:00:00Z").unwrap();
    assert_eq!(before, 1_796_191_200);
    assert_eq!(
        revoked.revocation_of("orders", before - 1).map(Resource::id).as_deref(),
        Some("CertificateRevocation/leak")
    );
    assert!(revoked.revocation_of("orders", before).is_none(), "issued at the moment: not before it");
    assert!(revoked.revocation_of("billing", before - 1).is_none(), "another workload's");
    assert_eq!(crate::kinds::certificate_revocation::format_time(before), "2026-12-02T06:00:00Z");
}
