//! The control plane's state: one writer at a time, each accepted change stored before it is
//! published, every reader (the API, and the sidecar streams to come) following a `watch` —
//! which also coalesces a burst of changes into the latest for a slow reader.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use weir_mesh::{Change, ChangeKind, Kind, MeshError, MeshState, Resource};

use crate::store::{FileStore, StoreError};

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The change is not valid for this mesh; nothing was stored.
    #[error(transparent)]
    Refused(#[from] MeshError),
    /// The change was valid but could not be stored; nothing was published.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct ControlPlane {
    store: Arc<FileStore>,
    state: watch::Sender<Arc<MeshState>>,
    /// Serializes writes: each is computed from the state the previous one left.
    writes: Mutex<()>,
}

impl ControlPlane {
    /// Loads the stored state.
    pub fn open(store: FileStore) -> Result<Self, StoreError> {
        let state = store.load()?;
        tracing::info!(dir = %store.dir().display(), version = state.version, resources = state.resources.len(), "mesh state loaded");
        let (state, _) = watch::channel(Arc::new(state));
        Ok(Self { store: Arc::new(store), state, writes: Mutex::new(()) })
    }

    pub fn current(&self) -> Arc<MeshState> {
        self.state.borrow().clone()
    }

    /// Every published state from now on (the latest, if several came while not looking).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MeshState>> {
        self.state.subscribe()
    }

    /// Creates or replaces `batch`, all or nothing. A dry run reports what would happen.
    pub async fn apply(&self, batch: &[Resource], dry_run: bool) -> Result<(u64, Vec<Change>), WriteError> {
        let _writing = self.writes.lock().await;
        let current = self.current();
        let (next, changes) = current.apply(batch)?;
        if !dry_run && next.version != current.version {
            self.commit(next).await?;
        }
        let version = if dry_run { current.version } else { self.current().version };
        Ok((version, changes))
    }

    /// Deletes one resource; `expected` is the `resourceVersion` the caller saw, if any.
    pub async fn delete(
        &self,
        kind: Kind,
        name: &str,
        expected: Option<&str>,
        dry_run: bool,
    ) -> Result<(u64, Change), WriteError> {
        let _writing = self.writes.lock().await;
        let current = self.current();
        let next = current.delete(kind, name, expected)?;
        let change = Change { kind: kind.name().to_owned(), name: name.to_owned(), action: ChangeKind::Deleted };
        if dry_run {
            return Ok((current.version, change));
        }
        let version = next.version;
        self.commit(next).await?;
        Ok((version, change))
    }

    async fn commit(&self, next: MeshState) -> Result<(), StoreError> {
        let next = Arc::new(next);
        let (store, to_save) = (self.store.clone(), next.clone());
        // File I/O with fsync: off the runtime's threads.
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(|e| StoreError::Write { file: self.store.dir().to_owned(), error: std::io::Error::other(e) })??;
        tracing::info!(version = next.version, "mesh state changed");
        self.state.send_replace(next);
        Ok(())
    }
}
