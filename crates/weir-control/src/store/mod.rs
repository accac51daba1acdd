//! Where the mesh state lives between restarts: a file in the data directory for one control
//! plane ([`file`]), or a compacted Kafka topic shared by several replicas ([`kafka`]).

pub mod file;
pub mod kafka;

pub use file::FileStore;
pub use kafka::{KafkaSettings, KafkaStore};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {dir}: {error}")]
    Dir { dir: PathBuf, error: std::io::Error },
    #[error("the data directory {dir} is in use by another `weir control` (pid {pid}); one process per directory")]
    Locked { dir: PathBuf, pid: String },
    #[error("cannot read {file}: {error}")]
    Read { file: PathBuf, error: std::io::Error },
    #[error("{file} is not a mesh state: {error}")]
    Corrupt { file: PathBuf, error: serde_json::Error },
    #[error("cannot write {file}: {error}")]
    Write { file: PathBuf, error: std::io::Error },
    #[error("the Kafka store (topic {topic}): {message}")]
    Kafka { topic: String, message: String },
}
