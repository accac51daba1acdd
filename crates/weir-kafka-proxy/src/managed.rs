//! A sidecar configured by the control plane: each snapshot it sends is read with the same
//! types as a config file, turned into a [`Snapshot`] and published, so open connections take
//! it at their next request. A snapshot that cannot be used (a file it names is unreadable, a
//! policy rule is wrong) is refused and changes nothing.
//!
//! What a snapshot can change live is what [`Snapshot`] holds: client TLS, SASL, the fixed
//! principal, the policy, and TLS towards the brokers. Other settings (where to listen, the
//! brokers, limits) take effect when the sidecar restarts; the sidecar says which in its ACK.
//!
//! TLS towards the brokers may present the workload's own certificate
//! (`upstream.tls.workload_identity`): its files are filled in here, and each renewal applies
//! the configuration again, so new broker connections present the new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use weir_core::control::{Update, WorkloadIdentity};

use crate::config::SidecarConfig;
use crate::snapshot::Snapshot;

/// Settings a snapshot applies to open connections (and new broker connections).
const LIVE: [&str; 16] = [
    "tls",
    "sasl",
    "fixed_principal",
    "authorization",
    "quotas",
    "faults",
    "shadows",
    "topic_aliases",
    "canaries",
    "topic_creation",
    "produce_safeguards",
    "schema_validation",
    "transforms",
    "encryption",
    "traces",
    "upstream.tls",
];

/// Reads a snapshot's config; errors say what is wrong and where.
pub fn read_config(version: u64, config_json: &str) -> Result<(SidecarConfig, Value), String> {
    let value: Value = serde_json::from_str(config_json).map_err(|e| format!("the snapshot is not JSON: {e}"))?;
    let origin = format!("control plane snapshot v{version}");
    let config = SidecarConfig::from_json(value.clone(), Path::new(&origin)).map_err(|e| e.to_string())?;
    Ok((config, value))
}

/// The files of the workload's current certificate and key (PEM), kept by the control client.
#[derive(Debug, Clone)]
pub struct WorkloadCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Points `upstream.tls` at the workload certificate's files when it asks for them.
pub fn use_workload_certificate(config: &mut SidecarConfig, files: &WorkloadCertificate) {
    if let Some(tls) = config.upstream.tls.as_mut() {
        tls.use_workload_certificate(&files.cert, &files.key);
    }
}

/// Applies snapshots from the control plane to a running sidecar.
pub struct Managed {
    /// The config the sidecar was started with: what restart-only settings are compared to.
    started_with: Value,
    publisher: watch::Sender<Arc<Snapshot>>,
    certificate: Option<WorkloadCertificate>,
}

impl Managed {
    pub fn new(started_with: Value, publisher: watch::Sender<Arc<Snapshot>>) -> Self {
        Self { started_with, publisher, certificate: None }
    }

    /// Fills `upstream.tls.workload_identity` in with these files.
    pub fn with_workload_certificate(self, certificate: WorkloadCertificate) -> Self {
        Self { certificate: Some(certificate), ..self }
    }

    /// Applies each update until the control client stops; and the last one again whenever
    /// the workload certificate is renewed (`renewed`), so TLS towards the brokers takes it.
    pub async fn run(
        self,
        mut updates: mpsc::Receiver<Update>,
        mut renewed: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
        (mut version, mut applied): (u64, String),
    ) {
        loop {
            tokio::select! {
                update = updates.recv() => {
                    let Some(update) = update else { return };
                    let answer = self.apply(update.version, &update.config_json).await;
                    if answer.is_ok() {
                        (version, applied) = (update.version, update.config_json);
                    }
                    let _ = update.reply.send(answer);
                }
                Ok(()) = renewed.changed() => {
                    renewed.borrow_and_update();
                    if self.certificate.is_some() && applied.contains("workload_identity") {
                        match self.apply(version, &applied).await {
                            Ok(_) => tracing::info!("the renewed workload certificate is used for new broker connections"),
                            Err(err) => tracing::warn!(%err, "cannot use the renewed workload certificate towards the brokers"),
                        }
                    }
                }
            }
        }
    }

    /// Builds and publishes the snapshot; `Ok` lists the changed settings that need a restart.
    pub async fn apply(&self, version: u64, config_json: &str) -> Result<Vec<String>, String> {
        let (mut config, value) = read_config(version, config_json)?;
        if let Some(files) = &self.certificate {
            use_workload_certificate(&mut config, files);
        }
        let next = Snapshot::load(&config).await.map_err(|e| e.to_string())?;
        let pending_restart = restart_only_changes(&self.started_with, &value);
        let current = self.publisher.borrow().clone();
        self.publisher.send_replace(Arc::new(Snapshot { generation: current.generation + 1, ..next }));
        tracing::info!(version, ?pending_restart, "configuration from the control plane applied");
        Ok(pending_restart)
    }
}

/// The settings that differ between two configs and apply only at a restart, by key path.
pub fn restart_only_changes(running: &Value, next: &Value) -> Vec<String> {
    weir_core::control::restart_only_changes(running, next, &LIVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_settings_that_cannot_change_live_are_reported() {
        let running = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "upstream": {"tls": {"ca": "a"}, "connect_timeout_ms": 5}});
        let same_but_live = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "fixed_principal": "x", "authorization": {"rules": []}, "quotas": [], "upstream": {"tls": {"ca": "b"}, "connect_timeout_ms": 5}});
        assert!(restart_only_changes(&running, &same_but_live).is_empty());
        let moved =
            json!({"listen": "127.0.0.1:2", "bootstrap": ["b:1"], "workers": 2, "upstream": {"connect_timeout_ms": 6}});
        assert_eq!(restart_only_changes(&running, &moved), ["listen", "upstream.connect_timeout_ms", "workers"]);
    }

    #[test]
    fn workload_identity_towards_the_brokers_is_filled_in_with_the_certificate_files() {
        let asked = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "upstream": {"tls": {"ca": "/ca.pem", "workload_identity": true}}});
        let (mut config, _) = read_config(1, &asked.to_string()).unwrap();
        let files = WorkloadCertificate { cert: "/state/orders.cert.pem".into(), key: "/state/orders.key.pem".into() };
        use_workload_certificate(&mut config, &files);
        let tls = config.upstream.tls.as_ref().unwrap();
        assert_eq!((tls.cert.as_deref(), tls.key.as_deref()), (Some(files.cert.as_path()), Some(files.key.as_path())));
        assert!(!tls.workload_identity);
        // A file-configured sidecar has no workload certificate: a clear error, not plaintext.
        let (file_config, _) = read_config(1, &asked.to_string()).unwrap();
        let err = weir_core::tls::client_config(file_config.upstream.tls.as_ref().unwrap()).unwrap_err().to_string();
        assert!(err.contains("needs a sidecar managed by the control plane"), "{err}");
    }

    #[tokio::test]
    async fn a_snapshot_that_cannot_be_used_changes_nothing() {
        let start = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"]});
        let first = Snapshot::load(&read_config(1, &start.to_string()).unwrap().0).await.unwrap();
        let (publisher, snapshots) = watch::channel(Arc::new(first));
        let managed = Managed::new(start.clone(), publisher);

        let unreadable = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "tls": {"cert": "/nonexistent/cert.pem", "key": "/nonexistent/key.pem"}});
        let err = managed.apply(2, &unreadable.to_string()).await.unwrap_err();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
        let bad_rule = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "authorization": {"rules": [{"effect": "allow", "principals": ["*"], "resources": ["topic:a"], "operations": ["raed"]}]}});
        let err = managed.apply(3, &bad_rule.to_string()).await.unwrap_err();
        assert!(err.contains("unknown operation `raed`"), "{err}");
        assert!(managed.apply(4, "{oops").await.unwrap_err().starts_with("the snapshot is not JSON"));
        assert_eq!(snapshots.borrow().generation, 1, "nothing was published");

        let policy = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "authorization": {"rules": [{"effect": "allow", "principals": ["*"], "resources": ["topic:a"], "operations": ["read"]}]}});
        assert_eq!(managed.apply(5, &policy.to_string()).await.unwrap(), Vec::<String>::new());
        assert_eq!(snapshots.borrow().generation, 2);
        assert!(snapshots.borrow().policy.is_some());
    }
}
