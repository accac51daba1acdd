//! Noticing that files changed, by polling: the modification time and size of each file,
//! compared with the last look (size too, because an edit within the clock's resolution still
//! changes one). Sources of live configuration poll with this; what to rebuild is theirs.

use std::path::PathBuf;
use std::time::SystemTime;

/// A set of files and how they looked when last checked.
pub struct FileStamps {
    files: Vec<PathBuf>,
    seen: Vec<Option<(SystemTime, u64)>>,
}

impl FileStamps {
    /// Remembers how `files` look now.
    pub fn new(files: Vec<PathBuf>) -> Self {
        let seen = stamps(&files);
        Self { files, seen }
    }

    /// Whether any file changed (or appeared, or went) since the last look.
    pub fn changed(&mut self) -> bool {
        let now = stamps(&self.files);
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_of_the_same_length_or_a_removal_is_a_change() {
        let file = std::env::temp_dir().join(format!("weir-stamps-{}", std::process::id()));
        std::fs::write(&file, "one").unwrap();
        let mut stamps = FileStamps::new(vec![file.clone()]);
        assert!(!stamps.changed());
        std::fs::write(&file, "one more").unwrap();
        assert!(stamps.changed());
        assert!(!stamps.changed(), "a change is reported once");
        std::fs::remove_file(&file).unwrap();
        assert!(stamps.changed());
    }
}
