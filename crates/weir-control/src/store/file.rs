//! The embedded store: one JSON file in the data directory, replaced atomically on every
//! accepted change (write a temporary file, sync it, rename it over the old one, sync the
//! directory), so a crash leaves the old state or the new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use weir_mesh::MeshState;

use super::StoreError;

const STATE_FILE: &str = "mesh.json";
const LOCK_FILE: &str = "control.lock";

/// The embedded store: owns its data directory while it lives.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    lock: PathBuf,
}

impl FileStore {
    /// Opens (creating) the data directory and takes it for this process: a second control
    /// plane on the same directory would overwrite the first one's changes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_error = |error| StoreError::Dir { dir: dir.to_owned(), error };
        fs::create_dir_all(dir).map_err(dir_error)?;
        let lock = dir.join(LOCK_FILE);
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(mut file) => write!(file, "{}", std::process::id()).map_err(dir_error)?,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid = fs::read_to_string(&lock).unwrap_or_default().trim().to_owned();
                if process_alive(&pid) {
                    return Err(StoreError::Locked { dir: dir.to_owned(), pid });
                }
                // Left by a process that died: take it over.
                fs::write(&lock, std::process::id().to_string()).map_err(dir_error)?;
            }
            Err(err) => return Err(dir_error(err)),
        }
        Ok(Self { dir: dir.to_owned(), lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored state, or an empty mesh on first start.
    pub fn load(&self) -> Result<MeshState, StoreError> {
        let file = self.dir.join(STATE_FILE);
        match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt { file, error }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(MeshState::default()),
            Err(error) => Err(StoreError::Read { file, error }),
        }
    }

    /// Replaces the stored state; when this returns, the state survives a crash.
    pub fn save(&self, state: &MeshState) -> Result<(), StoreError> {
        let file = self.dir.join(STATE_FILE);
        let temporary = self.dir.join(format!("{STATE_FILE}.tmp"));
        let write_error = |error| StoreError::Write { file: file.clone(), error };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| write_error(std::io::Error::other(e)))?;
        let mut out = File::create(&temporary).map_err(write_error)?;
        out.write_all(&bytes).map_err(write_error)?;
        out.sync_all().map_err(write_error)?;
        fs::rename(&temporary, &file).map_err(write_error)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(write_error)?;
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock);
    }
}

fn process_alive(pid: &str) -> bool {
    !pid.is_empty() && pid != std::process::id().to_string() && Path::new("/proc").join(pid).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_mesh::resource::parse_documents;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn saves_and_loads_and_guards_its_directory() {
        let dir = temp_dir("roundtrip");
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), MeshState::default());
        let text =
            "apiVersion: weir/v1alpha1\nkind: KafkaCluster\nmetadata: {name: main}\nspec: {bootstrap: ['b:1']}\n";
        let (state, _) = MeshState::default().apply(&parse_documents(text, "t").unwrap()).unwrap();
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        // Another process holding the directory (pid 1 is always alive).
        drop(store);
        fs::write(dir.join(LOCK_FILE), "1").unwrap();
        assert!(matches!(FileStore::open(&dir), Err(StoreError::Locked { .. })));
        // A lock left by a dead process is taken over.
        fs::write(dir.join(LOCK_FILE), "999999999").unwrap();
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), state);
        fs::write(dir.join(STATE_FILE), "{not json").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }
}
