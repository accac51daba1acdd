//! Everything a running sidecar may change without a restart, as one immutable [`Snapshot`]
//! published through a `tokio::sync::watch`.
//!
//! Sources publish; connections read. The first snapshot comes from the config file at start
//! ([`Snapshot::load`], where a broken file is an error). [`FileSource`] is the file
//! source: it re-reads the TLS and policy files when they change and publishes a snapshot
//! with the changed part rebuilt and the rest shared (a broken file is logged and the old
//! part kept). The control plane will be another source publishing into the same channel.
//!
//! Readers: a connection takes TLS, its identity settings and SASL from the snapshot current
//! when it is accepted, and the broker TLS when it connects upstream; its filters see every
//! new snapshot at its next request ([`crate::filter::Filter::on_snapshot`]), so a new
//! policy applies to open connections without reconnecting. JWKS keys are not here: they are
//! fetched data with their own refresh (on a timer, and when a token names an unknown key).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_core::policy::Policy;
use weir_core::reload::FileStamps;
use weir_core::sasl::SaslServer;
use weir_core::tls::{TlsOriginator, TlsTerminator};

use crate::config::SidecarConfig;
use crate::vocabulary::KAFKA;

/// Why a snapshot cannot be made from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot load the authorization policy: {0}")]
    Policy(weir_core::config::ConfigError),
    #[error("cannot set up SASL: {0}")]
    Sasl(weir_core::sasl::SaslSetupError),
    #[error("cannot set up TLS: {0}")]
    Tls(weir_core::tls::TlsError),
    #[error("bad fault rule: {0}")]
    Faults(weir_core::config::ConfigError),
}

/// The live configuration of a sidecar.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// 1 for the first snapshot, one more for each published after it.
    pub generation: u64,
    /// TLS termination for client connections (every listener).
    pub tls: Option<Arc<TlsTerminator>>,
    /// TLS towards the brokers.
    pub upstream_tls: Option<Arc<TlsOriginator>>,
    /// The principal of every client that TLS does not name.
    pub fixed_principal: Option<Arc<str>>,
    /// SASL terminated at the sidecar.
    pub sasl: Option<Arc<SaslServer>>,
    /// The authorization policy; every request is allowed without one.
    pub policy: Option<Arc<Policy>>,
    /// Quotas (byte rates, request time, connections); none limit anyone when empty.
    pub quotas: Arc<[crate::quota::QuotaRule]>,
    /// Fault injection; off when empty.
    pub faults: Arc<[crate::fault::FaultPlan]>,
    /// Traffic shadowing; none when empty.
    pub shadows: Arc<[crate::shadow::ShadowRule]>,
    /// Topic aliases; none when empty.
    pub topic_aliases: Arc<[crate::alias::TopicAlias]>,
    /// Canary routing; none when empty.
    pub canaries: Arc<[crate::canary::CanaryRule]>,
    /// Produce safeguards; none when empty.
    pub produce_safeguards: Arc<[crate::safeguard::ProduceSafeguard]>,
    /// Topic creation limits; none when empty.
    pub topic_creation: Arc<[crate::topic_limits::TopicCreationRule]>,
    /// Schema validation; none when empty.
    pub schema_validation: Arc<[crate::schema_rules::SchemaRule]>,
    /// Record transformation; none when empty.
    pub transforms: Arc<[crate::transform::TransformRule]>,
    /// Envelope encryption; none when empty.
    pub encryption: Arc<[crate::encryption::EncryptionRule]>,
    /// Tracing through record headers, when on.
    pub traces: Option<Arc<crate::traces::TraceRules>>,
}

/// What connections hold to read the current snapshot.
pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

impl Snapshot {
    /// The first snapshot, from the config: any file that cannot be used is an error.
    pub async fn load(config: &SidecarConfig) -> Result<Self, SnapshotError> {
        let tls = config.tls.clone().map(TlsTerminator::new).transpose().map_err(SnapshotError::Tls)?;
        let upstream_tls =
            config.upstream.tls.clone().map(TlsOriginator::new).transpose().map_err(SnapshotError::Tls)?;
        let policy = match &config.authorization {
            Some(authorization) => {
                Some(Arc::new(authorization.load(Path::new("authorization"), &KAFKA).map_err(SnapshotError::Policy)?))
            }
            None => None,
        };
        let sasl = match &config.sasl {
            Some(sasl) => Some(Arc::new(SaslServer::load(sasl).await.map_err(SnapshotError::Sasl)?)),
            None => None,
        };
        let faults = config.fault_plans(Path::new("faults")).map_err(SnapshotError::Faults)?;
        if !faults.is_empty() {
            let rules: Vec<&str> = faults.iter().map(|plan| &*plan.name).collect();
            tracing::warn!(
                ?rules,
                "FAULT INJECTION IS ON: clients of this sidecar get injected delays, errors and drops"
            );
        }
        Ok(Self {
            generation: 1,
            tls,
            upstream_tls,
            fixed_principal: config.fixed_principal.as_deref().map(Arc::from),
            sasl,
            policy,
            quotas: config.quotas.clone().into(),
            faults: faults.into(),
            shadows: config.shadows.clone().into(),
            topic_aliases: config.topic_aliases.clone().into(),
            canaries: config.canaries.clone().into(),
            topic_creation: config.topic_creation.clone().into(),
            produce_safeguards: config.produce_safeguards.clone().into(),
            schema_validation: config.schema_validation.clone().into(),
            transforms: config.transforms.clone().into(),
            encryption: config.encryption.clone().into(),
            traces: config.traces.clone().map(Arc::new),
        })
    }
}

/// Builds the next snapshot from the current one with one part read again from its files.
type Rebuild = Box<dyn FnMut(&Snapshot) -> Result<Snapshot, String> + Send>;

/// One part of the snapshot that lives in files: how to notice a change, and how to rebuild.
struct FilePart {
    stamps: FileStamps,
    every: Duration,
    due: tokio::time::Instant,
    rebuild: Rebuild,
}

/// The file source: publishes a new snapshot whenever the TLS files (either side) or the
/// policy file change, each checked at its own `reload_interval_ms` (at least 100 ms).
pub struct FileSource {
    parts: Vec<FilePart>,
}

impl FileSource {
    /// Notes how the files look now: make it before [`Snapshot::load`] reads them, so that a
    /// change in between is seen as one.
    pub fn new(config: &SidecarConfig) -> Self {
        let mut parts = Vec::new();
        if let Some(tls) = config.tls.clone() {
            let files = [Some(tls.cert.clone()), Some(tls.key.clone()), tls.client_ca.clone()];
            let every = tls.reload_interval_ms;
            parts.push(part(files.into_iter().flatten().collect(), every, move |current| {
                let tls = TlsTerminator::new(tls.clone()).map_err(|e| e.to_string())?;
                tracing::info!(cert = %tls.config().cert.display(), "TLS certificates reloaded");
                Ok(Snapshot { tls: Some(tls), ..current.clone() })
            }));
        }
        if let Some(tls) = config.upstream.tls.clone() {
            let files = [Some(tls.ca.clone()), tls.cert.clone(), tls.key.clone()];
            let every = tls.reload_interval_ms;
            parts.push(part(files.into_iter().flatten().collect(), every, move |current| {
                let tls = TlsOriginator::new(tls.clone()).map_err(|e| e.to_string())?;
                tracing::info!(ca = %tls.config().ca.display(), "upstream TLS files reloaded");
                Ok(Snapshot { upstream_tls: Some(tls), ..current.clone() })
            }));
        }
        if let Some((file, every)) =
            config.authorization.as_ref().and_then(|a| Some((a.policy.clone()?, a.reload_interval_ms)))
        {
            parts.push(part(vec![file.clone()], every, move |current| {
                let policy = Policy::load(&file, &KAFKA).map_err(|e| e.to_string())?;
                tracing::info!(file = %file.display(), rules = policy.rule_count(), "policy reloaded");
                Ok(Snapshot { policy: Some(Arc::new(policy)), ..current.clone() })
            }));
        }
        Self { parts }
    }

    /// A source that follows no files.
    pub fn none() -> Self {
        Self { parts: Vec::new() }
    }

    /// Publishes into `snapshots` until `stop`; a file that cannot be used is logged and the
    /// previous part kept.
    pub async fn run(mut self, snapshots: watch::Sender<Arc<Snapshot>>, stop: CancellationToken) {
        let Some(mut next) = self.parts.iter().map(|p| p.due).min() else {
            // No files to follow; the channel stays open for other sources until the end.
            stop.cancelled().await;
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let now = tokio::time::Instant::now();
            for part in self.parts.iter_mut().filter(|p| p.due <= now) {
                part.due = now + part.every;
                if !part.stamps.changed() {
                    continue;
                }
                let current = snapshots.borrow().clone();
                match (part.rebuild)(&current) {
                    Ok(new) => {
                        snapshots.send_replace(Arc::new(Snapshot { generation: current.generation + 1, ..new }));
                    }
                    Err(err) => {
                        tracing::error!(%err, "a configuration file changed but cannot be used; keeping the previous")
                    }
                }
            }
            next = self.parts.iter().map(|p| p.due).min().unwrap_or(now);
        }
    }
}

fn part(
    files: Vec<std::path::PathBuf>,
    every_ms: u64,
    rebuild: impl FnMut(&Snapshot) -> Result<Snapshot, String> + Send + 'static,
) -> FilePart {
    let every = Duration::from_millis(every_ms.max(100));
    FilePart {
        stamps: FileStamps::new(files),
        every,
        due: tokio::time::Instant::now() + every,
        rebuild: Box::new(rebuild),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::{READ, TOPIC};

    fn config(policy: &std::path::Path) -> SidecarConfig {
        let yaml = format!(
            "listen: 127.0.0.1:0\nbootstrap: [127.0.0.1:9092]\nauthorization: {{policy: {}, reload_interval_ms: 100}}\n",
            policy.display()
        );
        weir_core::config::parse_yaml(&yaml, std::path::Path::new("sidecar.yaml")).unwrap()
    }

    fn reads(snapshot: &Snapshot, topic: &str) -> bool {
        let policy = snapshot.policy.as_ref().unwrap();
        policy.for_principal(Some("a")).allows(TOPIC, topic, READ)
    }

    #[tokio::test]
    async fn a_changed_policy_file_publishes_a_new_snapshot_and_a_broken_one_keeps_the_last() {
        let dir = std::env::temp_dir().join(format!("weir-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.yaml");
        let allow = |topic: &str| {
            format!(
                "rules:\n  - {{effect: allow, principals: [a], resources: ['topic:{topic}'], operations: [read]}}\n"
            )
        };
        std::fs::write(&file, allow("one")).unwrap();
        let config = config(&file);
        let files = FileSource::new(&config);
        let first = Snapshot::load(&config).await.unwrap();
        assert_eq!(first.generation, 1);
        assert!(reads(&first, "one"));
        let (publish, mut snapshots) = watch::channel(Arc::new(first));
        let stop = CancellationToken::new();
        tokio::spawn(files.run(publish, stop.clone()));

        std::fs::write(&file, allow("two-longer")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), snapshots.changed()).await.unwrap().unwrap();
        let second = snapshots.borrow_and_update().clone();
        assert_eq!(second.generation, 2);
        assert!(reads(&second, "two-longer") && !reads(&second, "one"));

        std::fs::write(&file, "rules: [oops").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!snapshots.has_changed().unwrap(), "a broken file must not replace the policy");
        stop.cancel();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn rules_written_inline_are_the_policy() {
        let inline = "listen: 127.0.0.1:0\nbootstrap: [127.0.0.1:9092]\nauthorization:\n  rules: [{effect: allow, principals: [a], resources: ['topic:one'], operations: [read]}]\n";
        let config: SidecarConfig = weir_core::config::parse_yaml(inline, Path::new("sidecar.yaml")).unwrap();
        let snapshot = Snapshot::load(&config).await.unwrap();
        assert!(reads(&snapshot, "one") && !reads(&snapshot, "two"));

        let both = inline.replace("  rules:", "  policy: /p.yaml\n  rules:");
        let config: SidecarConfig = weir_core::config::parse_yaml(&both, Path::new("sidecar.yaml")).unwrap();
        let err = Snapshot::load(&config).await.err().unwrap().to_string();
        assert!(err.contains("expected either `policy` (a file) or `rules`, not both"), "{err}");
    }
}
