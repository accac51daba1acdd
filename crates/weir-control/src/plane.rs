//! The control plane's state: one writer at a time, each accepted change stored before it is
//! published, every reader (the API, the sidecars' streams) following a `watch` —
//! which also coalesces a burst of changes into the latest for a slow reader.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use weir_mesh::{Change, ChangeKind, Kind, MeshError, MeshState, Resource};

use crate::store::kafka::WriteFailure;
use crate::store::{FileStore, KafkaStore, StoreError};

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

/// Where accepted changes go.
enum Store {
    File(Arc<FileStore>),
    Kafka(Arc<KafkaStore>),
}

pub struct ControlPlane {
    store: Store,
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
        Ok(Self { store: Store::File(Arc::new(store)), state, writes: Mutex::new(()) })
    }

    /// Shares the state with other replicas through a Kafka topic (see [`crate::store::kafka`]).
    pub async fn open_kafka(settings: crate::store::KafkaSettings) -> Result<Self, StoreError> {
        let (store, state) = KafkaStore::open(settings).await?;
        let (state, _) = watch::channel(Arc::new(state));
        store.follow(state.clone());
        Ok(Self { store: Store::Kafka(store), state, writes: Mutex::new(()) })
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
        let batch = batch.to_vec();
        self.write(dry_run, move |current| current.apply(&batch)).await
    }

    /// Deletes one resource; `expected` is the `resourceVersion` the caller saw, if any.
    pub async fn delete(
        &self,
        kind: Kind,
        name: &str,
        expected: Option<&str>,
        dry_run: bool,
    ) -> Result<(u64, Change), WriteError> {
        let (name, expected) = (name.to_owned(), expected.map(str::to_owned));
        self.write(dry_run, move |current| {
            let next = current.delete(kind, &name, expected.as_deref())?;
            Ok((next, Change { kind: kind.name().to_owned(), name: name.clone(), action: ChangeKind::Deleted }))
        })
        .await
    }

    /// One change, serialized with every other (in this process, and through the store with
    /// other replicas): `change` makes the next state from the current one.
    async fn write<R: Send + 'static>(
        &self,
        dry_run: bool,
        change: impl Fn(&MeshState) -> Result<(MeshState, R), MeshError> + Send + Sync + 'static,
    ) -> Result<(u64, R), WriteError> {
        let _writing = self.writes.lock().await;
        let current = self.current();
        if dry_run {
            let (_, said) = change(&current)?;
            return Ok((current.version, said));
        }
        match &self.store {
            Store::File(_) => {
                let (next, said) = change(&current)?;
                let version = next.version;
                if version != current.version {
                    self.commit(next).await?;
                }
                Ok((version, said))
            }
            Store::Kafka(store) => {
                let store = store.clone();
                let written = tokio::task::spawn_blocking(move || store.write(&change))
                    .await
                    .map_err(|e| StoreError::Kafka { topic: String::new(), message: e.to_string() })?;
                match written {
                    Ok((next, said)) => {
                        let version = next.version;
                        self.publish(next);
                        Ok((version, said))
                    }
                    Err(WriteFailure::Refused(err)) => Err(err.into()),
                    Err(WriteFailure::Store(err) | WriteFailure::Fenced(err)) => Err(err.into()),
                }
            }
        }
    }

    /// Publishes `next` unless a newer state is already out.
    fn publish(&self, next: MeshState) {
        self.state.send_if_modified(|current| {
            if next.version > current.version {
                tracing::info!(version = next.version, "mesh state changed");
                *current = Arc::new(next);
                true
            } else {
                false
            }
        });
    }

    async fn commit(&self, next: MeshState) -> Result<(), StoreError> {
        let Store::File(store) = &self.store else { return Ok(()) };
        let next = Arc::new(next);
        let (store, to_save) = (store.clone(), next.clone());
        // File I/O with fsync: off the runtime's threads.
        let dir = store.dir().to_owned();
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(|e| StoreError::Write { file: dir, error: std::io::Error::other(e) })??;
        self.publish(Arc::unwrap_or_clone(next));
        Ok(())
    }
}
