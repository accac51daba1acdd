//! A sidecar configured by the control plane: each snapshot it sends is read with the same
//! types as a config file, turned into a [`Snapshot`] and published, so open connections take
//! it at their next request. A snapshot that cannot be used (a file it names is unreadable, a
//! policy rule is wrong) is refused and changes nothing.
//!
//! What a snapshot can change live is what [`Snapshot`] holds: client TLS, SASL, the fixed
//! principal, the policy, and TLS towards the brokers. Other settings (where to listen, the
//! brokers, limits) take effect when the sidecar restarts; the sidecar says which in its ACK.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use weir_core::control::Update;

use crate::config::SidecarConfig;
use crate::snapshot::Snapshot;

/// Top-level settings a snapshot applies to open connections.
const LIVE: [&str; 4] = ["tls", "sasl", "fixed_principal", "authorization"];
/// Settings under `upstream` that apply live.
const LIVE_UPSTREAM: [&str; 1] = ["tls"];

/// Reads a snapshot's config; errors say what is wrong and where.
pub fn read_config(version: u64, config_json: &str) -> Result<(SidecarConfig, Value), String> {
    let value: Value = serde_json::from_str(config_json).map_err(|e| format!("the snapshot is not JSON: {e}"))?;
    let origin = format!("control plane snapshot v{version}");
    let config = SidecarConfig::from_json(value.clone(), Path::new(&origin)).map_err(|e| e.to_string())?;
    Ok((config, value))
}

/// Applies snapshots from the control plane to a running sidecar.
pub struct Managed {
    /// The config the sidecar was started with: what restart-only settings are compared to.
    started_with: Value,
    publisher: watch::Sender<Arc<Snapshot>>,
}

impl Managed {
    pub fn new(started_with: Value, publisher: watch::Sender<Arc<Snapshot>>) -> Self {
        Self { started_with, publisher }
    }

    /// Applies each update until the control client stops.
    pub async fn run(self, mut updates: mpsc::Receiver<Update>) {
        while let Some(update) = updates.recv().await {
            let answer = self.apply(update.version, &update.config_json).await;
            let _ = update.reply.send(answer);
        }
    }

    /// Builds and publishes the snapshot; `Ok` lists the changed settings that need a restart.
    pub async fn apply(&self, version: u64, config_json: &str) -> Result<Vec<String>, String> {
        let (config, value) = read_config(version, config_json)?;
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
    let mut changed = Vec::new();
    for key in keys(running, next) {
        if LIVE.contains(&key.as_str()) {
            continue;
        }
        if key == "upstream" {
            for sub in keys(&running["upstream"], &next["upstream"]) {
                if !LIVE_UPSTREAM.contains(&sub.as_str()) && running["upstream"].get(&sub) != next["upstream"].get(&sub)
                {
                    changed.push(format!("upstream.{sub}"));
                }
            }
        } else if running.get(&key) != next.get(&key) {
            changed.push(key);
        }
    }
    changed
}

fn keys(a: &Value, b: &Value) -> std::collections::BTreeSet<String> {
    let names = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    names(a).into_iter().chain(names(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_settings_that_cannot_change_live_are_reported() {
        let running = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "upstream": {"tls": {"ca": "a"}, "connect_timeout_ms": 5}});
        let same_but_live = json!({"listen": "127.0.0.1:1", "bootstrap": ["b:1"], "fixed_principal": "x", "authorization": {"rules": []}, "upstream": {"tls": {"ca": "b"}, "connect_timeout_ms": 5}});
        assert!(restart_only_changes(&running, &same_but_live).is_empty());
        let moved =
            json!({"listen": "127.0.0.1:2", "bootstrap": ["b:1"], "workers": 2, "upstream": {"connect_timeout_ms": 6}});
        assert_eq!(restart_only_changes(&running, &moved), ["listen", "upstream.connect_timeout_ms", "workers"]);
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
