//! A directory for weft's `fs` namer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

/// A temporary discovery directory for the `fs` namer: one file per service, named as the
/// service, with lines `host port` or `host port * weight`.
///
/// Writes go through [`Disco::write`] (atomic: a temp file in a sibling staging directory,
/// then `rename(2)` over the target, so a reader sees the old or the new content, never a
/// mix) or [`Disco::write_in_place`] (truncate, then write in two pieces, as an editor or
/// `echo >` would: a reader may see an empty or partial file in between).
#[derive(Debug)]
pub struct Disco {
    root: TempDir,
    seq: AtomicUsize,
}

impl Disco {
    /// Creates an empty discovery directory.
    pub fn new() -> Disco {
        let root = tempfile::tempdir().expect("create disco tempdir");
        std::fs::create_dir(root.path().join("disco")).expect("create disco dir");
        std::fs::create_dir(root.path().join("staging")).expect("create staging dir");
        Disco {
            root,
            seq: AtomicUsize::new(0),
        }
    }

    /// The absolute directory to use as the namer's `rootDir`.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("disco")
    }

    /// The path of one service's file.
    pub fn file(&self, service: &str) -> PathBuf {
        self.path().join(service)
    }

    /// Atomically replaces (or creates) a service file: write a temp file, then rename.
    pub fn write(&self, service: &str, contents: &str) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let tmp = self
            .root
            .path()
            .join("staging")
            .join(format!("{service}.{n}"));
        let mut f = std::fs::File::create(&tmp).expect("create staging file");
        f.write_all(contents.as_bytes())
            .expect("write staging file");
        f.sync_all().expect("sync staging file");
        drop(f);
        std::fs::rename(&tmp, self.file(service)).expect("rename into disco");
    }

    /// Rewrites a service file in place, non-atomically: truncate, then write the first half
    /// and the rest in two `write` calls.
    pub fn write_in_place(&self, service: &str, contents: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.file(service))
            .expect("open service file");
        let (a, b) = contents.as_bytes().split_at(contents.len() / 2);
        f.write_all(a).expect("write first half");
        f.flush().expect("flush");
        f.write_all(b).expect("write second half");
    }

    /// Removes a service file (the service becomes unknown: Neg).
    pub fn remove(&self, service: &str) {
        std::fs::remove_file(self.file(service)).expect("remove service file");
    }

    /// The root as a `&Path` (parent of `path()`), for placing other test files.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Default for Disco {
    fn default() -> Self {
        Disco::new()
    }
}
