//! A proxy's side of the control plane: its workload identity, and one stream to
//! `weir control` kept open with jittered backoff, that hands each configuration snapshot to
//! the proxy and answers ACK or NACK with what the proxy said.
//!
//! Identity: the proxy makes its key locally and asks `Certify` for a certificate (with the
//! join token the first time), and asks again at 70 % of the certificate's lifetime with the
//! current certificate, without dropping anything. The stream is mutual TLS with that
//! certificate. The certificate, its key (mode 0600) and the last snapshot the proxy applied
//! are kept in the state directory, so a proxy that restarts while the control plane is away
//! starts from them.
//!
//! Protocol-neutral: the snapshot's config is opaque JSON text here; the Kafka sidecar (and
//! the MQTT and AMQP ones to come) read it with their own config types.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use weir_control_api::v1::mesh_client::MeshClient;
use weir_control_api::v1::{control_message, sidecar_message, Ack, CertifyRequest, Hello, Nack, SidecarMessage};

/// Where the control plane is and who this proxy is to it.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// `host:port` of each control-plane replica's sidecar listener; a lost stream reconnects
    /// to the next one.
    pub addresses: Vec<String>,
    /// Which of `addresses` is tried now.
    current: Arc<std::sync::atomic::AtomicUsize>,
    pub workload: String,
    pub join_token: String,
    /// Unique per process (host and pid).
    pub sidecar_id: String,
    /// Where clients reach this proxy (shown by `weir ctl status`).
    pub proxy_address: String,
    /// Where the last applied snapshot and the workload's certificate are kept.
    pub state_dir: PathBuf,
    /// The roots that vouch for the control plane (its `ca/bundle.pem`), until a certificate
    /// response brings the current bundle.
    pub ca_bundle_pem: String,
}

impl ControlSettings {
    pub fn new(
        addresses: Vec<String>,
        workload: String,
        join_token: String,
        state_dir: PathBuf,
        ca_bundle_pem: String,
    ) -> Self {
        Self {
            addresses,
            current: Arc::default(),
            workload,
            join_token,
            sidecar_id: default_sidecar_id(),
            proxy_address: String::new(),
            state_dir,
            ca_bundle_pem,
        }
    }

    /// The replica tried now.
    pub fn address(&self) -> &str {
        let at = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.addresses.get(at % self.addresses.len().max(1)).map(String::as_str).unwrap_or_default()
    }

    /// Moves on to the next replica (after a failure with this one).
    pub fn next_address(&self) {
        self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Which way a flow goes, from the proxy's clients' side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDirection {
    /// They write (Kafka: produce).
    Produce,
    /// They read (Kafka: fetch).
    Consume,
}

/// One flow's totals since the proxy started, for the mesh's topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowTotals {
    pub principal: String,
    /// The client id its requests carried.
    pub client_id: String,
    /// The consumer group that client id is a member of, if any.
    pub group: String,
    /// A topic, for Kafka.
    pub resource: String,
    pub direction: FlowDirection,
    pub records: u64,
    pub bytes: u64,
    /// Requests the policy refused.
    pub denied: u64,
}

/// What the proxy has seen flow, asked for every [`REPORT_EVERY`].
pub type FlowSource = Arc<dyn Fn() -> Vec<FlowTotals> + Send + Sync>;

/// How often a proxy reports its flows.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

fn report_message(flows: Vec<FlowTotals>) -> SidecarMessage {
    use weir_control_api::v1::{Direction, Flow, Report};
    let flows = flows
        .into_iter()
        .map(|f| Flow {
            principal: f.principal,
            client_id: f.client_id,
            group: f.group,
            resource: f.resource,
            direction: match f.direction {
                FlowDirection::Produce => Direction::Produce,
                FlowDirection::Consume => Direction::Consume,
            } as i32,
            records: f.records,
            bytes: f.bytes,
            denied: f.denied,
        })
        .collect();
    SidecarMessage { message: Some(sidecar_message::Message::Report(Report { flows })) }
}

/// The workload's certificate: what it proves the proxy is, to the control plane and (later)
/// to brokers and peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadIdentity {
    pub spiffe_id: String,
    /// The certificate, then intermediates, PEM.
    pub chain_pem: String,
    pub key_pem: String,
    /// The roots the mesh trusts, PEM.
    pub bundle_pem: String,
    /// Unix seconds.
    pub issued_at: u64,
    pub not_after: u64,
}

impl WorkloadIdentity {
    /// When to renew: at 70 % of the lifetime, as linkerd2-proxy does.
    pub fn renew_at(&self) -> u64 {
        self.issued_at + (self.not_after.saturating_sub(self.issued_at)) * 7 / 10
    }

    /// Still good for a while: not within the last tenth of its lifetime (at most 30 s).
    pub fn is_valid(&self) -> bool {
        let margin = (self.not_after.saturating_sub(self.issued_at) / 10).min(30);
        unix_now() + margin < self.not_after
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn identity_file(dir: &Path, workload: &str) -> PathBuf {
    dir.join(format!("{workload}.identity.json"))
}

/// Where the current workload certificate (chain) and its key are kept as PEM files, for TLS
/// that reads files (towards the brokers): `(certificate, key)`.
pub fn identity_pem_files(dir: &Path, workload: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{workload}.cert.pem")), dir.join(format!("{workload}.key.pem")))
}

/// The identity kept for `workload`, if any (valid or not).
pub fn kept_identity(dir: &Path, workload: &str) -> Option<WorkloadIdentity> {
    serde_json::from_slice(&std::fs::read(identity_file(dir, workload)).ok()?).ok()
}

/// Keeps the identity (JSON, for restarts) and its certificate and key as PEM files; the key
/// file is written before the certificate, and each replaces the old one whole.
fn keep_identity(dir: &Path, workload: &str, identity: &WorkloadIdentity) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (cert, key) = identity_pem_files(dir, workload);
    crate::fs::write_private(&key, identity.key_pem.as_bytes())?;
    crate::fs::write_private(&cert, identity.chain_pem.as_bytes())?;
    let json = serde_json::to_vec(identity).map_err(std::io::Error::other)?;
    crate::fs::write_private(&identity_file(dir, workload), &json)
}

/// Takes the trust bundle a snapshot brings: when it differs from the identity's (a root
/// rotation started or finished), the control plane is verified with it from now on and the
/// certificate is renewed at once, so that the current root signs it.
fn adopt_bundle(settings: &ControlSettings, identity: &IdentityWatch, bundle_pem: &str, renew_now: &Notify) {
    let current = identity.borrow().clone();
    let Some(current) = current.filter(|c| !bundle_pem.is_empty() && c.bundle_pem != bundle_pem) else { return };
    let adopted = WorkloadIdentity { bundle_pem: bundle_pem.to_owned(), ..(*current).clone() };
    if let Err(err) = keep_identity(&settings.state_dir, &settings.workload, &adopted) {
        tracing::warn!(dir = %settings.state_dir.display(), %err, "cannot keep the new trust bundle on disk");
    }
    identity.send_replace(Some(Arc::new(adopted)));
    tracing::info!("the mesh's trust bundle changed; renewing the workload certificate now");
    renew_now.notify_one();
}

/// After the control plane said the certificate is revoked: drops it (here and on disk), so
/// that the next attempt asks for a new one with the join token.
fn forget_if_revoked(settings: &ControlSettings, identity: &IdentityWatch, refusal: &str) {
    if !refusal.starts_with(weir_control_api::REVOKED) {
        return;
    }
    tracing::warn!(%refusal, "the workload certificate was revoked; asking for a new one with the join token");
    identity.send_replace(None);
    let _ = std::fs::remove_file(identity_file(&settings.state_dir, &settings.workload));
}

/// The current identity, shared by the stream (which connects with it) and the renewal.
pub type IdentityWatch = watch::Sender<Option<Arc<WorkloadIdentity>>>;

/// A TLS channel to the control plane: verified against the mesh's roots, presenting the
/// workload's certificate when there is one.
async fn channel(
    settings: &ControlSettings,
    identity: Option<&WorkloadIdentity>,
) -> Result<tonic::transport::Channel, StreamEnd> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let address = settings.address();
    let host = address.rsplit_once(':').map(|(host, _)| host).unwrap_or(address);
    let bundle = identity.map(|i| i.bundle_pem.as_str()).unwrap_or(&settings.ca_bundle_pem);
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(bundle)).domain_name(host.trim_matches(['[', ']']));
    if let Some(identity) = identity {
        tls = tls.identity(Identity::from_pem(&identity.chain_pem, &identity.key_pem));
    }
    let endpoint = Endpoint::from_shared(format!("https://{address}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    Ok(endpoint.connect().await?)
}

/// Asks the control plane for a certificate: with `current` (renewal), or the join token.
pub async fn certify(
    settings: &ControlSettings,
    current: Option<&WorkloadIdentity>,
) -> Result<WorkloadIdentity, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    if let Some(current) = current {
        let uri = current.spiffe_id.clone().try_into().map_err(|e| format!("{e}"))?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    }
    let csr = params.serialize_request(&key).and_then(|r| r.pem()).map_err(|e| format!("cannot make a CSR: {e}"))?;
    let channel = match channel(settings, current).await {
        Ok(channel) => channel,
        Err(err) => {
            settings.next_address();
            return Err(err.to_string());
        }
    };
    let request = CertifyRequest {
        workload: settings.workload.clone(),
        token: if current.is_some() { String::new() } else { settings.join_token.clone() },
        csr_pem: csr,
        sidecar_id: settings.sidecar_id.clone(),
    };
    let response = MeshClient::new(channel).certify(request).await.map_err(|s| s.message().to_owned())?.into_inner();
    let identity = WorkloadIdentity {
        spiffe_id: response.spiffe_id,
        chain_pem: response.certificate_chain_pem,
        key_pem: key.serialize_pem(),
        bundle_pem: response.trust_bundle_pem,
        issued_at: unix_now(),
        not_after: response.not_after,
    };
    if let Err(err) = keep_identity(&settings.state_dir, &settings.workload, &identity) {
        tracing::warn!(dir = %settings.state_dir.display(), %err, "cannot keep the certificate on disk");
    }
    tracing::info!(spiffe_id = %identity.spiffe_id, not_after = identity.not_after, "workload certificate issued");
    Ok(identity)
}

/// A valid identity: the current one, the one kept on disk, or a new one (join token).
pub async fn ensure_identity(
    settings: &ControlSettings,
    identity: &IdentityWatch,
) -> Result<Arc<WorkloadIdentity>, String> {
    if let Some(current) = identity.borrow().clone().filter(|i| i.is_valid()) {
        return Ok(current);
    }
    let kept = kept_identity(&settings.state_dir, &settings.workload).filter(WorkloadIdentity::is_valid);
    let fresh = match kept {
        Some(kept) => {
            // The PEM files too: a state directory from before they were kept has none.
            if let Err(err) = keep_identity(&settings.state_dir, &settings.workload, &kept) {
                tracing::warn!(dir = %settings.state_dir.display(), %err, "cannot keep the certificate on disk");
            }
            kept
        }
        None => certify(settings, None).await?,
    };
    let fresh = Arc::new(fresh);
    identity.send_replace(Some(fresh.clone()));
    Ok(fresh)
}

/// Renews the certificate at 70 % of its lifetime, or at once when `now` is notified (the
/// trust bundle changed), with the current one, until `stop`; a failed renewal is retried
/// with backoff while the certificate is still valid.
pub async fn renew(settings: ControlSettings, identity: Arc<IdentityWatch>, now: Arc<Notify>, stop: CancellationToken) {
    let mut backoff = Backoff::for_this_process();
    let mut forced = false;
    loop {
        let current = identity.borrow().clone();
        let wait = match &current {
            Some(current) => Duration::from_secs(current.renew_at().saturating_sub(unix_now())),
            None => Duration::from_secs(1),
        };
        if !forced {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = now.notified() => forced = true,
            }
        }
        let Some(current) = current.filter(|c| forced || c.renew_at() <= unix_now()) else { continue };
        match certify(&settings, Some(&current)).await {
            Ok(renewed) => {
                backoff.reset();
                forced = false;
                identity.send_replace(Some(Arc::new(renewed)));
            }
            Err(reason) => {
                forget_if_revoked(&settings, &identity, &reason);
                let retry_in = backoff.wait();
                tracing::warn!(%reason, ?retry_in, not_after = current.not_after, "cannot renew the workload certificate yet");
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}

/// A snapshot for the proxy to apply. Reply `Ok(settings that need a restart)` or
/// `Err(why it cannot be used)`; an `Err` keeps the previous configuration running.
#[derive(Debug)]
pub struct Update {
    pub version: u64,
    pub config_json: String,
    pub reply: oneshot::Sender<Result<Vec<String>, String>>,
}

/// The settings that differ between two snapshots (JSON configs) and apply only at a restart,
/// by key path: everything but `live`, whose entries are top-level keys (`tls`) or one level
/// down (`upstream.tls`).
pub fn restart_only_changes(running: &serde_json::Value, next: &serde_json::Value, live: &[&str]) -> Vec<String> {
    let mut changed = Vec::new();
    for key in keys(running, next) {
        if live.contains(&key.as_str()) {
            continue;
        }
        let prefix = format!("{key}.");
        let live_below: Vec<&str> = live.iter().filter_map(|l| l.strip_prefix(prefix.as_str())).collect();
        if live_below.is_empty() {
            if running.get(&key) != next.get(&key) {
                changed.push(key);
            }
            continue;
        }
        for sub in keys(&running[&key], &next[&key]) {
            if !live_below.contains(&sub.as_str()) && running[&key].get(&sub) != next[&key].get(&sub) {
                changed.push(format!("{prefix}{sub}"));
            }
        }
    }
    changed
}

fn keys(a: &serde_json::Value, b: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let names =
        |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    names(a).into_iter().chain(names(b)).collect()
}

/// The last snapshot a proxy applied, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub version: u64,
    pub workload: String,
    pub config_json: String,
}

fn cache_file(dir: &Path, workload: &str) -> PathBuf {
    dir.join(format!("{workload}.snapshot.json"))
}

/// The last snapshot applied for `workload`, if one was kept.
pub fn last_applied(dir: &Path, workload: &str) -> Option<Applied> {
    let bytes = std::fs::read(cache_file(dir, workload)).ok()?;
    serde_json::from_slice(&bytes).ok().filter(|a: &Applied| a.workload == workload)
}

/// Keeps `applied` for the next start: written to a temporary file and renamed over the old.
pub fn keep_applied(dir: &Path, applied: &Applied) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = cache_file(dir, &applied.workload);
    let temporary = file.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec(applied).map_err(std::io::Error::other)?)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &file)
}

/// Backoff between reconnects: doubling from 250 ms to 15 s, each wait jittered to 50–100 %
/// so that sidecars that lost the control plane together do not return together.
pub struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(15);

    pub fn new(seed: u64) -> Self {
        Self { next: Self::FIRST, seed: seed | 1 }
    }

    /// Seeded from the process id and the clock.
    pub fn for_this_process() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
        Self::new(u64::from(std::process::id()) << 32 ^ u64::from(nanos))
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        // xorshift: enough to spread sidecars apart, not a secret.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = 0.5 + (self.seed % 1000) as f64 / 2000.0;
        let wait = self.next.mul_f64(fraction);
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

/// Why one stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{}", .0.message())]
    Refused(#[from] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
    #[error("the proxy stopped taking updates")]
    ProxyGone,
    #[error("no workload certificate: {0}")]
    Identity(String),
}

/// Follows the control plane until `stop`: every snapshot goes to `updates`, and its answer
/// back to the control plane. `running`: the version the proxy already runs (from disk). The
/// certificate is renewed alongside, in `identity`.
pub async fn follow(
    settings: ControlSettings,
    identity: Arc<IdentityWatch>,
    mut running: u64,
    updates: mpsc::Sender<Update>,
    flows: Option<FlowSource>,
    stop: CancellationToken,
) {
    let renew_now = Arc::new(Notify::new());
    tokio::spawn(renew(settings.clone(), identity.clone(), renew_now.clone(), stop.clone()));
    let mut backoff = Backoff::for_this_process();
    loop {
        let stream = one_stream(&settings, &identity, &mut running, &updates, flows.as_ref(), &mut backoff, &renew_now);
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = stream => ended,
        };
        if matches!(ended, StreamEnd::ProxyGone) {
            return;
        }
        let wait = backoff.wait();
        tracing::warn!(control = %settings.address(), reason = %ended, retry_in = ?wait, "control plane stream down; serving the last good configuration");
        settings.next_address();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens a stream (mutual TLS with the workload's certificate) and says Hello: the sender for
/// answers and the snapshots to come.
async fn open(
    settings: &ControlSettings,
    identity: &IdentityWatch,
    running: u64,
) -> Result<(mpsc::Sender<SidecarMessage>, tonic::Streaming<weir_control_api::v1::ControlMessage>), StreamEnd> {
    let current = ensure_identity(settings, identity).await.map_err(StreamEnd::Identity)?;
    let channel = channel(settings, Some(&current)).await?;
    let (outbound, outbound_stream) = mpsc::channel::<SidecarMessage>(4);
    let hello = Hello {
        workload: settings.workload.clone(),
        sidecar_id: settings.sidecar_id.clone(),
        weir_version: env!("CARGO_PKG_VERSION").to_owned(),
        running_version: running,
        address: settings.proxy_address.clone(),
    };
    // Queued before the call, so the control plane has it with the stream's first frames.
    let _ = outbound.send(SidecarMessage { message: Some(sidecar_message::Message::Hello(hello)) }).await;
    let request = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(outbound_stream);
    match MeshClient::new(channel).stream(request).await {
        Ok(inbound) => Ok((outbound, inbound.into_inner())),
        Err(status) => {
            forget_if_revoked(settings, identity, status.message());
            Err(status.into())
        }
    }
}

/// The first snapshot the control plane sends, for a proxy that needs a configuration before
/// it can start. `check` says whether the proxy could use it; one it could not is NACKed here
/// (and returned as the error), so `weir ctl status` shows why the sidecar does not start.
pub async fn first_snapshot(
    settings: &ControlSettings,
    identity: &IdentityWatch,
    running: u64,
    check: impl Fn(u64, &str) -> Result<(), String>,
) -> Result<Applied, String> {
    let (outbound, mut inbound) = open(settings, identity, running).await.map_err(|e| e.to_string())?;
    loop {
        let message = inbound
            .message()
            .await
            .map_err(|s| s.message().to_owned())?
            .ok_or("the control plane closed the stream")?;
        let Some(control_message::Message::Snapshot(snapshot)) = message.message else { continue };
        if let Err(reason) = check(snapshot.version, &snapshot.config_json) {
            let nack = Nack { version: snapshot.version, reason: reason.clone() };
            let _ = outbound.send(SidecarMessage { message: Some(sidecar_message::Message::Nack(nack)) }).await;
            // Let the NACK leave before the stream is dropped.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(reason);
        }
        return Ok(Applied {
            version: snapshot.version,
            workload: settings.workload.clone(),
            config_json: snapshot.config_json,
        });
    }
}

async fn one_stream(
    settings: &ControlSettings,
    identity: &IdentityWatch,
    running: &mut u64,
    updates: &mpsc::Sender<Update>,
    flows: Option<&FlowSource>,
    backoff: &mut Backoff,
    renew_now: &Notify,
) -> StreamEnd {
    let (outbound, mut inbound) = match open(settings, identity, *running).await {
        Ok(opened) => opened,
        Err(end) => return end,
    };
    tracing::info!(control = %settings.address(), workload = %settings.workload, "following the control plane");
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let received = tokio::select! {
            received = inbound.message() => received,
            _ = report.tick(), if flows.is_some() => {
                let totals = flows.map(|source| source()).unwrap_or_default();
                if outbound.send(report_message(totals)).await.is_err() {
                    return StreamEnd::Closed;
                }
                continue;
            }
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => return StreamEnd::Closed,
            Err(status) => {
                forget_if_revoked(settings, identity, status.message());
                return StreamEnd::Refused(status);
            }
        };
        backoff.reset();
        let Some(control_message::Message::Snapshot(snapshot)) = message.message else { continue };
        adopt_bundle(settings, identity, &snapshot.trust_bundle_pem, renew_now);
        let (reply, answer) = oneshot::channel();
        let update = Update { version: snapshot.version, config_json: snapshot.config_json.clone(), reply };
        if updates.send(update).await.is_err() {
            return StreamEnd::ProxyGone;
        }
        let Ok(answer) = answer.await else { return StreamEnd::ProxyGone };
        let message = match answer {
            Ok(pending_restart) => {
                *running = snapshot.version;
                let applied = Applied {
                    version: snapshot.version,
                    workload: settings.workload.clone(),
                    config_json: snapshot.config_json,
                };
                if let Err(err) = keep_applied(&settings.state_dir, &applied) {
                    tracing::warn!(dir = %settings.state_dir.display(), %err, "cannot keep the applied configuration on disk; a restart without the control plane would not find it");
                }
                sidecar_message::Message::Ack(Ack { version: snapshot.version, pending_restart })
            }
            Err(reason) => {
                tracing::warn!(version = snapshot.version, %reason, "configuration from the control plane refused; keeping the last good one");
                sidecar_message::Message::Nack(Nack { version: snapshot.version, reason })
            }
        };
        if outbound.send(SidecarMessage { message: Some(message) }).await.is_err() {
            return StreamEnd::Closed;
        }
    }
}

/// A default id for this process: host name and pid.
pub fn default_sidecar_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_jittered_and_resets() {
        let mut backoff = Backoff::new(42);
        let waits: Vec<Duration> = (0..10).map(|_| backoff.wait()).collect();
        assert!(waits[0] >= Duration::from_millis(125) && waits[0] <= Duration::from_millis(250), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Backoff::MAX), "{waits:?}");
        assert!(waits[9] >= Backoff::MAX / 2, "{waits:?}");
        backoff.reset();
        assert!(backoff.wait() <= Duration::from_millis(250));
        let other: Vec<Duration> = {
            let mut b = Backoff::new(7);
            (0..10).map(|_| b.wait()).collect()
        };
        assert_ne!(waits, other, "jitter differs between sidecars");
    }

    #[test]
    fn renewal_is_due_at_seventy_percent_of_the_lifetime() {
        let identity = WorkloadIdentity {
            spiffe_id: "spiffe://t/ns/a/sa/b".into(),
            chain_pem: String::new(),
            key_pem: String::new(),
            bundle_pem: String::new(),
            issued_at: 1_000,
            not_after: 1_000 + 86_400,
        };
        assert_eq!(identity.renew_at(), 1_000 + 60_480);
        assert!(!identity.is_valid(), "long expired");
    }

    #[test]
    fn the_applied_snapshot_is_kept_per_workload() {
        let dir = std::env::temp_dir().join(format!("weir-control-cache-{}", std::process::id()));
        assert_eq!(last_applied(&dir, "orders"), None);
        let applied = Applied { version: 3, workload: "orders".into(), config_json: "{}".into() };
        keep_applied(&dir, &applied).unwrap();
        assert_eq!(last_applied(&dir, "orders"), Some(applied));
        assert_eq!(last_applied(&dir, "billing"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
