//! A proxy's side of the control plane: one stream to `weir control`, kept open with
//! jittered backoff, that hands each configuration snapshot to the proxy and answers ACK or
//! NACK with what the proxy said. The last snapshot the proxy applied is kept on disk, so a
//! proxy that restarts while the control plane is away starts from it.
//!
//! Protocol-neutral: the snapshot's config is opaque JSON text here; the Kafka sidecar (and
//! the MQTT and AMQP ones to come) read it with their own config types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weir_control_api::v1::mesh_client::MeshClient;
use weir_control_api::v1::{control_message, sidecar_message, Ack, Hello, Nack, SidecarMessage};

/// Where the control plane is and who this proxy is to it.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// `host:port` of `weir control`'s sidecar listener.
    pub address: String,
    pub workload: String,
    pub join_token: String,
    /// Unique per process (host and pid).
    pub sidecar_id: String,
    /// Where clients reach this proxy (shown by `weir ctl status`).
    pub proxy_address: String,
    /// Where the last applied snapshot is kept.
    pub state_dir: PathBuf,
}

/// A snapshot for the proxy to apply. Reply `Ok(settings that need a restart)` or
/// `Err(why it cannot be used)`; an `Err` keeps the previous configuration running.
#[derive(Debug)]
pub struct Update {
    pub version: u64,
    pub config_json: String,
    pub reply: oneshot::Sender<Result<Vec<String>, String>>,
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
}

/// Follows the control plane until `stop`: every snapshot goes to `updates`, and its answer
/// back to the control plane. `running`: the version the proxy already runs (from disk).
pub async fn follow(
    settings: ControlSettings,
    mut running: u64,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::for_this_process();
    loop {
        let stream = one_stream(&settings, &mut running, &updates, &mut backoff);
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = stream => ended,
        };
        if matches!(ended, StreamEnd::ProxyGone) {
            return;
        }
        let wait = backoff.wait();
        tracing::warn!(control = %settings.address, reason = %ended, retry_in = ?wait, "control plane stream down; serving the last good configuration");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens a stream and says Hello: the sender for answers and the snapshots to come.
async fn open(
    settings: &ControlSettings,
    running: u64,
) -> Result<(mpsc::Sender<SidecarMessage>, tonic::Streaming<weir_control_api::v1::ControlMessage>), StreamEnd> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", settings.address))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await?;
    let (outbound, outbound_stream) = mpsc::channel::<SidecarMessage>(4);
    let hello = Hello {
        workload: settings.workload.clone(),
        token: settings.join_token.clone(),
        sidecar_id: settings.sidecar_id.clone(),
        weir_version: env!("CARGO_PKG_VERSION").to_owned(),
        running_version: running,
        address: settings.proxy_address.clone(),
    };
    // Queued before the call, so the control plane has it with the stream's first frames.
    let _ = outbound.send(SidecarMessage { message: Some(sidecar_message::Message::Hello(hello)) }).await;
    let request = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(outbound_stream);
    let inbound = MeshClient::new(channel).stream(request).await?.into_inner();
    Ok((outbound, inbound))
}

/// The first snapshot the control plane sends, for a proxy that needs a configuration before
/// it can start. `check` says whether the proxy could use it; one it could not is NACKed here
/// (and returned as the error), so `weir ctl status` shows why the sidecar does not start.
pub async fn first_snapshot(
    settings: &ControlSettings,
    running: u64,
    check: impl Fn(u64, &str) -> Result<(), String>,
) -> Result<Applied, String> {
    let (outbound, mut inbound) = open(settings, running).await.map_err(|e| e.to_string())?;
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
    running: &mut u64,
    updates: &mpsc::Sender<Update>,
    backoff: &mut Backoff,
) -> StreamEnd {
    let (outbound, mut inbound) = match open(settings, *running).await {
        Ok(opened) => opened,
        Err(end) => return end,
    };
    tracing::info!(control = %settings.address, workload = %settings.workload, "following the control plane");
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return StreamEnd::Closed,
            Err(status) => return StreamEnd::Refused(status),
        };
        backoff.reset();
        let Some(control_message::Message::Snapshot(snapshot)) = message.message else { continue };
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
