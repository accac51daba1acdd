//! `weir ctl`: what each command sends and how its answer is shown. Every function returns
//! the text to print, so the binary only prints it.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use weir_mesh::{parse_documents, to_yaml, Kind, MeshError, MeshState, Protocol, Resource};

use crate::client::{ApiClient, ClientError};
use crate::sidecars::SidecarStatus;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Invalid(#[from] MeshError),
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

/// Reads resources from files, directories (their `.yaml`, `.yml` and `.json` files, by name)
/// and `-` (standard input), in order; every resource is checked here, so a typo is reported
/// with its file before anything is sent.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Resource>, CtlError> {
    if paths.is_empty() {
        return Err(CtlError::Usage("no resources given; use -f FILE, -f DIR or -f -".into()));
    }
    let mut resources = Vec::new();
    for path in paths {
        for file in files_of(path)? {
            let text = if file == Path::new("-") {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|error| CtlError::Read { path: file.clone(), error })?;
                text
            } else {
                std::fs::read_to_string(&file).map_err(|error| CtlError::Read { path: file.clone(), error })?
            };
            resources.extend(parse_documents(&text, &file.display().to_string())?);
        }
    }
    if resources.is_empty() {
        return Err(CtlError::Usage(format!("no resources in {}", display_paths(paths))));
    }
    Ok(resources)
}

fn files_of(path: &Path) -> Result<Vec<PathBuf>, CtlError> {
    if path == Path::new("-") || !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let read_error = |error| CtlError::Read { path: path.to_owned(), error };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error)? {
        let file = entry.map_err(read_error)?.path();
        if matches!(file.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Sends `resources` as one change (all or nothing) and says what happened to each.
pub async fn apply(client: &ApiClient, resources: &[Resource], dry_run: bool) -> Result<String, CtlError> {
    let path = if dry_run { "/api/v1/apply?dryRun=true" } else { "/api/v1/apply" };
    let answer = client.post(path, &serde_json::json!({ "resources": resources })).await?;
    Ok(describe_changes(&answer, dry_run))
}

/// `revoke WORKLOAD`: a `CertificateRevocation` of what was issued to it until now.
pub async fn revoke(client: &ApiClient, workload: &str, dry_run: bool) -> Result<String, CtlError> {
    let now = crate::sidecars::now();
    let revocation = serde_json::json!({
        "apiVersion": weir_mesh::API_VERSION,
        "kind": Kind::CertificateRevocation.name(),
        "metadata": {"name": format!("{workload}-revoked-{now}")},
        "spec": {
            "workload": workload,
            "issued_before": weir_mesh::kinds::certificate_revocation::format_time(now + 1),
        },
    });
    let resource: Resource = serde_json::from_value(revocation).map_err(|e| ClientError::NotTheApi {
        address: String::new(),
        status: 0,
        body: format!("cannot make the revocation: {e}"),
    })?;
    apply(client, &[resource], dry_run).await
}

/// `token WORKLOAD`: gives the workload a join token of its own (stored as its SHA-256 in the
/// `Workload`, replacing any earlier one); returns the token, to be handed to its sidecars.
pub async fn token(client: &ApiClient, workload: &str) -> Result<String, CtlError> {
    let state = fetch_state(client).await?;
    let mut resource = state
        .get(Kind::Workload, workload)
        .cloned()
        .ok_or(MeshError::NotFound { resource: format!("{}/{workload}", Kind::Workload) })?;
    let secret = crate::api::new_secret().map_err(|error| CtlError::Read { path: "/dev/urandom".into(), error })?;
    if let Some(spec) = resource.spec.as_object_mut() {
        spec.insert("join_token_sha256".into(), crate::api::sha256_hex(&secret).into());
    }
    // Applied at the version read: a concurrent change to the workload makes this fail, not lose it.
    apply(client, &[resource], false).await?;
    Ok(format!("{secret}\n"))
}

/// What `weir ctl ca` does.
pub enum CaAction {
    Status,
    Rotate,
    FinishRotation { force: bool },
}

/// `ca status|rotate|finish-rotation`: the CA's roots and rotation, after the action.
pub async fn ca(client: &ApiClient, action: CaAction) -> Result<String, CtlError> {
    let answer = match action {
        CaAction::Status => client.get("/api/v1/ca").await?,
        CaAction::Rotate => client.post("/api/v1/ca/rotate", &serde_json::json!({})).await?,
        CaAction::FinishRotation { force } => {
            let path = if force { "/api/v1/ca/finish-rotation?force=true" } else { "/api/v1/ca/finish-rotation" };
            client.post(path, &serde_json::json!({})).await?
        }
    };
    let ca = &answer["ca"];
    let mut out = String::new();
    let origin = if ca["own_root"].as_bool() == Some(true) { "the control plane's own" } else { "supplied" };
    let _ = writeln!(out, "root: {origin}");
    let _ = writeln!(out, "trust bundle:");
    for root in ca["bundle"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}", root.as_str().unwrap_or("?"));
    }
    match ca["rotation_started"].as_u64() {
        None => {
            let _ = writeln!(out, "rotation: none in progress");
        }
        Some(started) => {
            let stale: Vec<&str> = answer["sidecarsOnOldCertificates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .collect();
            let _ = writeln!(
                out,
                "rotation: started {}; connected sidecars still on the old root: {}",
                weir_mesh::kinds::certificate_revocation::format_time(started),
                if stale.is_empty() { "none (ready to finish)".to_owned() } else { stale.join(", ") }
            );
        }
    }
    Ok(out)
}

fn describe_changes(answer: &serde_json::Value, dry_run: bool) -> String {
    let mut out = String::new();
    for change in answer["changes"].as_array().into_iter().flatten() {
        let action = change["action"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{}/{} {action}{}",
            change["kind"].as_str().unwrap_or("?"),
            change["name"].as_str().unwrap_or("?"),
            if dry_run { " (dry run)" } else { "" }
        );
    }
    let _ = writeln!(out, "mesh version {}", answer["version"]);
    out
}

/// The whole mesh state, as the control plane has it now.
pub async fn fetch_state(client: &ApiClient) -> Result<MeshState, CtlError> {
    let answer = client.get("/api/v1/resources").await?;
    let version = answer["version"].as_u64().unwrap_or_default();
    let resources = serde_json::from_value(answer["items"].clone()).map_err(|e| ClientError::NotTheApi {
        address: String::new(),
        status: 200,
        body: format!("a resource list that does not read: {e}"),
    })?;
    Ok(MeshState { version, resources })
}

/// `get KIND [NAME]`.
pub async fn get(client: &ApiClient, kind: Kind, name: Option<&str>, output: Output) -> Result<String, CtlError> {
    let state = fetch_state(client).await?;
    let found: Vec<Resource> = match name {
        Some(name) => {
            vec![state.get(kind, name).cloned().ok_or(MeshError::NotFound { resource: format!("{kind}/{name}") })?]
        }
        None => state.list(kind).cloned().collect(),
    };
    Ok(match output {
        Output::Yaml => to_yaml(&found),
        Output::Json if name.is_some() => pretty(&found[0]),
        Output::Json => pretty(&serde_json::json!({ "version": state.version, "items": found })),
        Output::Table => table(kind, &found, &state),
    })
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

fn table(kind: Kind, resources: &[Resource], state: &MeshState) -> String {
    if resources.is_empty() {
        return format!("no {kind} resources (mesh version {})\n", state.version);
    }
    let mut rows = vec![["NAME".to_owned(), "VERSION".to_owned(), detail_header(kind).to_owned(), "LABELS".to_owned()]];
    for resource in resources {
        let labels: Vec<String> = resource.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push([
            resource.metadata.name.clone(),
            resource.metadata.resource_version.clone().unwrap_or_default(),
            detail(kind, resource, state),
            if labels.is_empty() { "-".into() } else { labels.join(",") },
        ]);
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

fn detail_header(kind: Kind) -> &'static str {
    match kind {
        Kind::KafkaCluster => "BOOTSTRAP",
        Kind::MqttBroker | Kind::AmqpBroker => "UPSTREAM",
        Kind::Workload => "REACHES",
        Kind::AuthorizationPolicy | Kind::PeerAuthentication => "WORKLOADS",
        Kind::CertificateRevocation => "REVOKES",
    }
}

fn detail(kind: Kind, resource: &Resource, state: &MeshState) -> String {
    match kind {
        Kind::KafkaCluster => {
            let servers = resource.spec["bootstrap"].as_array().into_iter().flatten().filter_map(|s| s.as_str());
            servers.collect::<Vec<_>>().join(",")
        }
        Kind::MqttBroker | Kind::AmqpBroker => resource.spec["upstream"].as_str().unwrap_or("?").to_owned(),
        Kind::Workload => reaches(resource),
        Kind::AuthorizationPolicy | Kind::PeerAuthentication => names(state.selected_by(resource)),
        Kind::CertificateRevocation => revoked(resource),
    }
}

/// What a workload reaches: `KafkaCluster/main`, `MqttBroker/edge`.
fn reaches(workload: &Resource) -> String {
    let protocol = Protocol::of(&workload.spec);
    let name = workload.spec[protocol.broker_field()].as_str().unwrap_or("?");
    format!("{}/{name}", protocol.broker_kind())
}

fn revoked(resource: &Resource) -> String {
    let workload = resource.spec["workload"].as_str().unwrap_or("?");
    let before = resource.spec["issued_before"].as_str().unwrap_or("?");
    format!("{workload}'s certificates issued before {before}")
}

fn names<'a>(resources: impl Iterator<Item = &'a Resource>) -> String {
    let names: Vec<&str> = resources.map(|r| r.metadata.name.as_str()).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(",")
    }
}

/// `describe KIND NAME`: the resource, and how it relates to the rest of the mesh.
pub async fn describe(client: &ApiClient, kind: Kind, name: &str) -> Result<String, CtlError> {
    let state = fetch_state(client).await?;
    let resource = state.get(kind, name).ok_or(MeshError::NotFound { resource: format!("{kind}/{name}") })?;
    let mut out = to_yaml(std::slice::from_ref(resource));
    out.push_str("# in the mesh:\n");
    match kind {
        Kind::KafkaCluster | Kind::MqttBroker | Kind::AmqpBroker => {
            let _ = writeln!(out, "#   workloads reaching it: {}", names(state.workloads_of(kind, name)));
        }
        Kind::Workload => {
            let _ = writeln!(out, "#   protocol: {}", Protocol::of(&resource.spec));
            let _ = writeln!(out, "#   reaches: {}", reaches(resource));
            let _ = writeln!(out, "#   authorization policies: {}", names(state.policies_for(resource)));
            let peer = state.peer_authentication_for(resource).map(|p| p.metadata.name.as_str());
            let _ = writeln!(
                out,
                "#   peer authentication: {}",
                peer.unwrap_or("(none: clients are not authenticated by the sidecar)")
            );
        }
        Kind::AuthorizationPolicy | Kind::PeerAuthentication => {
            let _ = writeln!(out, "#   applies to workloads: {}", names(state.selected_by(resource)));
        }
        Kind::CertificateRevocation => {
            let _ = writeln!(out, "#   revokes: {}", revoked(resource));
        }
    }
    Ok(out)
}

/// `status`: every sidecar the control plane has seen, and whether it runs its configuration.
pub async fn status(client: &ApiClient) -> Result<String, CtlError> {
    let answer = client.get("/api/v1/sidecars").await?;
    let sidecars: Vec<SidecarStatus> = serde_json::from_value(answer["sidecars"].clone()).unwrap_or_default();
    let mut out = format!("mesh version {}\n", answer["version"]);
    if sidecars.is_empty() {
        out.push_str("no sidecars have connected\n");
        return Ok(out);
    }
    let now = crate::sidecars::now();
    let mut rows =
        vec![["SIDECAR", "WORKLOAD", "ADDRESS", "STREAM", "CONFIG", "CERTIFICATE", "LAST SEEN"].map(str::to_owned)];
    for s in &sidecars {
        let config = match (&s.nack, s.acked_version == s.sent_version) {
            (Some((version, reason)), _) => format!("NACK v{version}: {reason}"),
            (None, true) => format!("ACK v{}", s.acked_version),
            (None, false) => format!("v{} sent, v{} applied", s.sent_version, s.acked_version),
        };
        let config = if s.pending_restart.is_empty() {
            config
        } else {
            format!("{config} (restart to apply: {})", s.pending_restart.join(", "))
        };
        rows.push([
            s.sidecar_id.clone(),
            s.workload.clone(),
            s.address.clone(),
            if s.connected { "connected".into() } else { "disconnected".into() },
            config,
            match s.certificate_not_after {
                0 => "-".into(),
                t if t <= now => format!("expired {}s ago", now - t),
                t => format!("expires in {}", human_duration(t - now)),
            },
            if s.connected { "now (streaming)".into() } else { format!("{}s ago", now.saturating_sub(s.last_seen)) },
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    Ok(out)
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// How `topology` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyOutput {
    Table,
    Json,
    Dot,
}

/// `topology`: who produces to and consumes from which topic, with rates.
pub async fn topology(client: &ApiClient, output: TopologyOutput) -> Result<String, CtlError> {
    let answer = client.get("/api/v1/topology").await?;
    let graph: crate::topology::Graph = serde_json::from_value(answer.clone()).map_err(|e| ClientError::NotTheApi {
        address: String::new(),
        status: 200,
        body: e.to_string(),
    })?;
    let label = |id: &str| id.split_once('/').map(|(_, rest)| rest.to_owned()).unwrap_or_else(|| id.to_owned());
    Ok(match output {
        TopologyOutput::Json => pretty(&answer),
        TopologyOutput::Dot => {
            let mut out = String::from("digraph mesh {\n  rankdir=LR;\n");
            for node in &graph.nodes {
                let shape = if node.kind == "topic" { "box" } else { "ellipse" };
                let _ = writeln!(out, "  \"{}\" [label=\"{}\", shape={shape}];", node.id, node.name);
            }
            for edge in &graph.edges {
                let style = if edge.denied > 0 { ", color=red, style=dashed" } else { "" };
                let group = if edge.group.is_empty() { String::new() } else { format!(" (group {})", edge.group) };
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [label=\"{:.1} rec/s{}{group}\"{style}];",
                    edge.from,
                    edge.to,
                    edge.records_per_second,
                    if edge.denied > 0 { format!(", {} denied", edge.denied) } else { String::new() }
                );
            }
            out.push_str("}\n");
            out
        }
        TopologyOutput::Table => {
            let mut out = format!("mesh version {}\n", graph.version);
            if graph.edges.is_empty() {
                out.push_str("no flows reported yet\n");
                return Ok(out);
            }
            let mut rows =
                vec![["FROM", "TO", "PRINCIPAL", "CLIENT", "GROUP", "RECORDS/S", "BYTES/S", "RECORDS", "DENIED"]
                    .map(str::to_owned)];
            let or_dash = |text: &str| if text.is_empty() { "-".to_owned() } else { text.to_owned() };
            for e in &graph.edges {
                rows.push([
                    label(&e.from),
                    label(&e.to),
                    e.principal.clone(),
                    or_dash(&e.client_id),
                    or_dash(&e.group),
                    format!("{:.1}", e.records_per_second),
                    format!("{:.0}", e.bytes_per_second),
                    e.records.to_string(),
                    e.denied.to_string(),
                ]);
            }
            let widths: Vec<usize> = (0..9).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
            for row in rows {
                let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
                let _ = writeln!(out, "{}", line.join("   ").trim_end());
            }
            out
        }
    })
}

/// `delete KIND NAME`.
pub async fn delete(
    client: &ApiClient,
    kind: Kind,
    name: &str,
    resource_version: Option<&str>,
    dry_run: bool,
) -> Result<String, CtlError> {
    let mut path = format!("/api/v1/resources/{}/{name}?dryRun={dry_run}", kind.name());
    if let Some(version) = resource_version {
        path.push_str(&format!("&resourceVersion={version}"));
    }
    let answer = client.delete(&path).await?;
    Ok(describe_changes(&answer, dry_run))
}

/// `diff -f ...`: each resource as stored against as given (a line diff of their YAML, the
/// control plane's own fields left out), then what an apply would do. The boolean says
/// whether anything would change (the CLI exits 1 then, as `kubectl diff` does).
pub async fn diff(client: &ApiClient, resources: &[Resource]) -> Result<(String, bool), CtlError> {
    let state = fetch_state(client).await?;
    // The control plane checks the batch as apply would (references, conflicts) and says
    // what it would do; nothing is stored.
    let answer = client.post("/api/v1/apply?dryRun=true", &serde_json::json!({ "resources": resources })).await?;
    let mut out = String::new();
    let mut changed = false;
    for resource in resources {
        let kind = resource.known_kind().ok_or_else(|| CtlError::Usage(format!("{}: unknown kind", resource.id())))?;
        let old = state.get(kind, &resource.metadata.name).map(|r| to_yaml(&[r.without_version()])).unwrap_or_default();
        let new = to_yaml(&[resource.without_version()]);
        if old == new {
            continue;
        }
        changed = true;
        let _ = writeln!(out, "--- {} (mesh version {})\n+++ {} (given)", resource.id(), state.version, resource.id());
        for line in line_diff(&old, &new) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(&describe_changes(&answer, true));
    Ok((out, changed))
}

/// A line diff (longest common subsequence): `-` lines only in `old`, `+` only in `new`,
/// two-space indented lines in both.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_marks_only_what_changed() {
        let old = "a\nb\nc\n";
        let new = "a\nx\nc\nd\n";
        assert_eq!(line_diff(old, new), ["  a", "- b", "+ x", "  c", "+ d"]);
        assert_eq!(line_diff("k: 1\n", "k: 2\n"), ["- k: 1", "+ k: 2"], "the old line first");
        assert_eq!(line_diff("", "a\n"), ["+ a"]);
        assert!(line_diff("same\n", "same\n").iter().all(|l| l.starts_with("  ")));
    }
}
