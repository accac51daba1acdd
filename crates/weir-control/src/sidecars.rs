//! What the control plane knows of each sidecar that has streamed from it: which workload,
//! which configuration version it was sent and which it applied (ACK) or refused (NACK, and
//! why), and when it was last heard from. `weir ctl status` shows this.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SidecarStatus {
    pub sidecar_id: String,
    pub workload: String,
    pub address: String,
    pub weir_version: String,
    /// The peer address of its stream.
    pub peer: String,
    pub connected: bool,
    /// Unix seconds.
    pub connected_since: u64,
    pub last_seen: u64,
    /// The last configuration version sent to it, and the last it applied.
    pub sent_version: u64,
    pub acked_version: u64,
    /// The last refusal: version and reason (cleared by a later ACK of a newer version).
    pub nack: Option<(u64, String)>,
    /// Settings that changed but need a restart of the sidecar.
    pub pending_restart: Vec<String>,
    /// When its newest certificate expires (Unix seconds; 0: none seen).
    pub certificate_not_after: u64,
    /// Who signed its newest certificate (the issuer's subject): a root rotation is finished
    /// only when every connected sidecar's is the new root.
    #[serde(default)]
    pub certificate_issuer: String,
}

/// Every sidecar seen since the control plane started.
#[derive(Default)]
pub struct Sidecars {
    by_id: Mutex<BTreeMap<String, SidecarStatus>>,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Sidecars {
    pub fn update(&self, sidecar_id: &str, change: impl FnOnce(&mut SidecarStatus)) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let status = by_id
            .entry(sidecar_id.to_owned())
            .or_insert_with(|| SidecarStatus { sidecar_id: sidecar_id.to_owned(), ..SidecarStatus::default() });
        change(status);
        status.last_seen = now();
    }

    pub fn all(&self) -> Vec<SidecarStatus> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}
