//! [`FsStore`]: one `<namespace>.dtab` file per namespace in a directory.

use std::io::{self, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use weft_naming::Dtab;

use super::{valid_namespace, DtabStore, StoreError, StoreFuture, Versioned, Watchers};

/// How often watched files are re-read, in addition to inotify events (a safety net for
/// editors that replace files and for directories on file systems without events).
const RESCAN: Duration = Duration::from_secs(1);
/// Files larger than this are refused rather than read (the API's body limit is 1 MiB).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Dtabs as files (`storage: {kind: fs, dir: DIR}`): namespace `ns` is `DIR/ns.dtab`, in the
/// dtab text format. The version is the first 16 hex digits of the SHA-256 of the file's
/// bytes, so an edit by hand is a new version too.
///
/// Writes go to a temporary file in the same directory that is then renamed over the target
/// (a create links it, which fails if the target exists), so a reader never sees half a
/// dtab. Compare-and-set holds within this process; two processes writing the same
/// directory can still race (use etcd for several control instances). Files are watched
/// (inotify, plus a rescan every second); a file that does not parse keeps its watchers on the
/// last good dtab and reads as an error.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Serialises this process's writes (read, compare, write) with each other.
    writes: Mutex<()>,
    watchers: Watchers,
    wake: Arc<Notify>,
    temp_seq: AtomicU64,
}

// === impl FsStore ===

impl FsStore {
    /// Opens (creating it if needed) the directory and starts watching it. Must be called
    /// inside a tokio runtime; the watching task ends when the last clone is dropped.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &FsPath) -> Result<FsStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            writes: Mutex::new(()),
            watchers: Watchers::default(),
            wake: Arc::new(Notify::new()),
            temp_seq: AtomicU64::new(0),
        });
        let watcher = start_watcher(dir, inner.wake.clone());
        tokio::spawn(watch_loop(Arc::downgrade(&inner), watcher));
        Ok(FsStore { inner })
    }
}

impl Inner {
    fn file(&self, ns: &str) -> PathBuf {
        self.dir.join(format!("{ns}.dtab"))
    }

    fn read(&self, ns: &str) -> Result<Option<Versioned>, StoreError> {
        let path = self.file(ns);
        let text = match read_limited(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::internal(format!("{}: {e}", path.display())));
            }
        };
        let dtab = Dtab::read(&text)
            .map_err(|e| StoreError::internal(format!("{}: {e}", path.display())))?;
        Ok(Some(Versioned {
            version: version_of(text.as_bytes()),
            dtab,
        }))
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded value is `()`: nothing to be inconsistent after a panic.
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `dtab` to a new temporary file in the directory; returns its path and version.
    fn write_temp(&self, ns: &str, dtab: &Dtab) -> io::Result<(PathBuf, String)> {
        let text = format!("{dtab:#}");
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{ns}.dtab.{}.{seq}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok((temp, version_of(text.as_bytes())))
    }

    fn create(&self, ns: &str, dtab: &Dtab) -> Result<String, StoreError> {
        check_name(ns)?;
        let _writes = self.lock_writes();
        let (temp, version) = self.write_temp(ns, dtab).map_err(|e| self.io_error(e))?;
        // A hard link fails if the target exists: an atomic create-if-absent.
        let linked = std::fs::hard_link(&temp, self.file(ns));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(version),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::exists(ns)),
            Err(e) => Err(self.io_error(e)),
        }
    }

    fn update(&self, ns: &str, dtab: &Dtab, expected: Option<&str>) -> Result<String, StoreError> {
        check_name(ns)?;
        let _writes = self.lock_writes();
        let current = self.read(ns)?.ok_or_else(|| StoreError::not_found(ns))?;
        check_version(&current, expected)?;
        let (temp, version) = self.write_temp(ns, dtab).map_err(|e| self.io_error(e))?;
        if let Err(e) = std::fs::rename(&temp, self.file(ns)) {
            let _ = std::fs::remove_file(&temp);
            return Err(self.io_error(e));
        }
        Ok(version)
    }

    fn delete(&self, ns: &str, expected: Option<&str>) -> Result<(), StoreError> {
        check_name(ns)?;
        let _writes = self.lock_writes();
        let current = self.read(ns)?.ok_or_else(|| StoreError::not_found(ns))?;
        check_version(&current, expected)?;
        std::fs::remove_file(self.file(ns)).map_err(|e| self.io_error(e))
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io_error(e))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let ns = name.strip_suffix(".dtab")?;
                valid_namespace(ns).then(|| ns.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Re-reads a namespace after a write or an event and tells its watchers.
    fn refresh(&self, ns: &str) {
        match self.read(ns) {
            Ok(v) => self.watchers.publish(ns, v, 0),
            Err(error) => {
                tracing::warn!(%error, "dtab file unreadable; watchers keep the last good dtab")
            }
        }
    }

    fn io_error(&self, e: io::Error) -> StoreError {
        StoreError::internal(format!("{}: {e}", self.dir.display()))
    }
}

fn check_name(ns: &str) -> Result<(), StoreError> {
    if valid_namespace(ns) {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "invalid namespace name \"{ns}\""
        )))
    }
}

fn check_version(current: &Versioned, expected: Option<&str>) -> Result<(), StoreError> {
    match expected {
        Some(v) if v != current.version => Err(StoreError::conflict(&current.version)),
        _ => Ok(()),
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
fn version_of(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_limited(path: &FsPath) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "file is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read_to_string(path)
}

impl DtabStore for FsStore {
    fn list(&self) -> StoreFuture<'_, Vec<String>> {
        let out = self.inner.list();
        Box::pin(async move { out })
    }

    fn get<'a>(&'a self, ns: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let out = check_name(ns).and_then(|()| self.inner.read(ns));
        Box::pin(async move { out })
    }

    fn create<'a>(&'a self, ns: &'a str, dtab: &'a Dtab) -> StoreFuture<'a, String> {
        let out = self.inner.create(ns, dtab);
        self.inner.refresh(ns);
        Box::pin(async move { out })
    }

    fn update<'a>(
        &'a self,
        ns: &'a str,
        dtab: &'a Dtab,
        expected: Option<&'a str>,
    ) -> StoreFuture<'a, String> {
        let out = self.inner.update(ns, dtab, expected);
        self.inner.refresh(ns);
        Box::pin(async move { out })
    }

    fn delete<'a>(&'a self, ns: &'a str, expected: Option<&'a str>) -> StoreFuture<'a, ()> {
        let out = self.inner.delete(ns, expected);
        self.inner.refresh(ns);
        Box::pin(async move { out })
    }

    fn watch(&self, ns: &str) -> watch::Receiver<Option<Versioned>> {
        self.inner.watchers.subscribe(ns, || {
            if valid_namespace(ns) {
                self.inner.read(ns).ok().flatten()
            } else {
                None
            }
        })
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        let out = self.inner.list().map(drop);
        Box::pin(async move { out })
    }
}

/// Re-reads every watched namespace on each file event and every [`RESCAN`].
async fn watch_loop(inner: Weak<Inner>, _watcher: Option<notify::RecommendedWatcher>) {
    let Some(wake) = inner.upgrade().map(|i| i.wake.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RESCAN) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        for ns in inner.watchers.namespaces() {
            if valid_namespace(&ns) {
                inner.refresh(&ns);
            }
        }
    }
}

fn start_watcher(dir: &FsPath, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            wake.notify_one();
        }
    };
    let mut watcher = notify::recommended_watcher(handler)
        .inspect_err(|e| tracing::debug!(error = %e, "fs store: no file watcher"))
        .ok()?;
    match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "fs store: cannot watch directory; rescanning every second");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_store_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(dir.path()).expect("open");
        crate::store::tests::contract(&store).await;
    }

    #[tokio::test]
    async fn fs_store_sees_a_file_edited_by_hand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(dir.path()).expect("open");
        let mut rx = store.watch("edge");
        std::fs::write(dir.path().join("edge.dtab"), "/svc => /#/io.l5d.fs;\n").expect("write");
        let want = Dtab::read("/svc => /#/io.l5d.fs").expect("dtab");
        crate::store::tests::wait_for(&mut rx, Some(&want)).await;
        // A file that does not parse keeps the last good dtab in the watch.
        std::fs::write(dir.path().join("edge.dtab"), "/svc => ").expect("write");
        let err = store.get("edge").await.expect_err("does not parse");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(rx.borrow().as_ref().map(|v| &v.dtab), Some(&want));
        assert_eq!(store.list().await.expect("list"), vec!["edge".to_owned()]);
    }
}
