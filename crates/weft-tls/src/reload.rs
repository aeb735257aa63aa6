//! Material built from PEM files and rebuilt when they change: the machinery shared by
//! [`crate::Identity`] and [`crate::ServerCertificates`].
//!
//! A change is noticed by file-system events on the files' directories (a rename replaces a
//! file, so watching the file itself would lose it) and by a re-check every second. It is
//! applied once the files have stopped changing; a set that does not build (broken PEM, a
//! key that does not match, an expired certificate) is rejected, logged at `warn` and
//! counted once per distinct content, and the last good material stays in use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rustls::pki_types::UnixTime;

use crate::TlsError;

/// How often the files are re-read even without a file-system event.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a change must be quiet before it is tried (cert and key are often replaced one
/// after the other).
const SETTLE: Duration = Duration::from_millis(150);

/// The bytes of a source's files, in the order of [`Source::paths`].
pub(crate) type Files = Vec<Vec<u8>>;

/// What to read and how to turn the bytes into material.
pub(crate) trait Source: Send + Sync + 'static {
    /// The validated material, shared with the rustls hooks that read it per handshake.
    type Material: Send + Sync + 'static;
    /// What log lines call the material (`identity`, `ingress certificate`).
    const WHAT: &'static str;

    /// The files, read together.
    fn paths(&self) -> &[PathBuf];

    /// Validates the files' bytes (in the order of `paths`) at `now`.
    fn build(&self, files: &[Vec<u8>], now: UnixTime) -> Result<Self::Material, TlsError>;

    /// Logs, at `info`, that `material` replaced the previous material.
    fn applied(&self, material: &Self::Material);

    /// When the first certificate of `material` expires (seconds since the Unix epoch), and
    /// the name of that certificate for the warning logged once it has.
    fn expiry(&self, material: &Self::Material) -> (i64, String);
}

/// The current material of one source, replaced as its files change.
pub(crate) struct Reloading<S: Source> {
    source: S,
    current: RwLock<Arc<S::Material>>,
    reloads: AtomicU64,
    rejected: AtomicU64,
    watching: AtomicBool,
    /// Bytes last tried (good or rejected), so one broken file is counted once.
    last_seen: Mutex<Option<Files>>,
    last_read_error: Mutex<Option<String>>,
}

// === impl Reloading ===

impl<S: Source> std::fmt::Debug for Reloading<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &S::WHAT)
            .field("paths", &self.source.paths())
            .finish_non_exhaustive()
    }
}

impl<S: Source> Reloading<S> {
    /// Reads and builds the material once.
    ///
    /// # Errors
    /// The first file that cannot be read, or what [`Source::build`] rejects.
    pub(crate) fn load(source: S) -> Result<Reloading<S>, TlsError> {
        let files = read_files(source.paths())?;
        let material = source.build(&files, UnixTime::now())?;
        Ok(Reloading {
            source,
            current: RwLock::new(Arc::new(material)),
            reloads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            last_seen: Mutex::new(Some(files)),
            last_read_error: Mutex::new(None),
        })
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// The material in use now.
    pub(crate) fn current(&self) -> Arc<S::Material> {
        // A poisoned lock still holds a complete `Arc`: writers only swap it.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many reloads applied new material.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many changed sets of files were rejected (each distinct broken content once).
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Starts watching the files, until the last `Arc` is dropped. Calling it again does
    /// nothing. Outside a tokio runtime it logs a warning and does nothing.
    pub(crate) fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(what = S::WHAT, "TLS files not watched: no tokio runtime");
            self.watching.store(false, Ordering::SeqCst);
            return;
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let fs_watcher = fs_watcher(self.source.paths(), wake.clone());
        rt.spawn(watch_loop(Arc::downgrade(self), wake, fs_watcher));
    }

    /// Reads the files; when they differ from what was last tried, waits for them to settle,
    /// then validates and applies them or rejects them. Returns whether new material applied.
    pub(crate) async fn check(&self) -> bool {
        let Some(mut files) = self.read().await else {
            return false;
        };
        if self.seen(&files) {
            return false;
        }
        for _ in 0..10 {
            tokio::time::sleep(SETTLE).await;
            match self.read().await {
                Some(again) if again == files => break,
                Some(again) => files = again,
                None => return false,
            }
        }
        let built = self.source.build(&files, UnixTime::now());
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(files);
        match built {
            Ok(m) => {
                self.source.applied(&m);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.reject(&error);
                false
            }
        }
    }

    fn reject(&self, error: &TlsError) {
        tracing::warn!(
            %error,
            "{} reload rejected; keeping the last good material",
            S::WHAT
        );
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn seen(&self, files: &Files) -> bool {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            == Some(files)
    }

    async fn read(&self) -> Option<Files> {
        let paths = self.source.paths().to_vec();
        let read = tokio::task::spawn_blocking(move || read_files(&paths)).await;
        let mut last = self
            .last_read_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(Ok(files)) => {
                *last = None;
                Some(files)
            }
            Ok(Err(error)) => {
                let msg = error.to_string();
                if last.as_deref() != Some(msg.as_str()) {
                    self.reject(&error);
                    *last = Some(msg);
                }
                None
            }
            Err(_) => None,
        }
    }
}

/// Reads every file in `paths`.
fn read_files(paths: &[PathBuf]) -> Result<Files, TlsError> {
    paths
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| TlsError::file(p, format!("cannot read: {e}")).with_source(e))
        })
        .collect()
}

async fn watch_loop<S: Source>(
    reloading: Weak<Reloading<S>>,
    wake: Arc<tokio::sync::Notify>,
    _fs_watcher: Option<notify::RecommendedWatcher>,
) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry_warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
        }
        let Some(reloading) = reloading.upgrade() else {
            return;
        };
        reloading.check().await;
        let (not_after, name) = reloading.source.expiry(&reloading.current());
        let expired = i64::try_from(UnixTime::now().as_secs()).unwrap_or(i64::MAX) >= not_after;
        if expired && !expiry_warned {
            tracing::warn!(
                certificate = %name,
                not_after,
                "{} certificate has expired; peers will refuse it until it is replaced",
                S::WHAT
            );
        }
        expiry_warned = expired;
    }
}

/// True for events that may change a file's content: created, written, renamed, removed
/// (and events the backend cannot classify); false for opens, reads and closes without write.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches the directories of `paths`. Without a working watcher the periodic re-check still
/// applies.
fn fs_watcher(
    paths: &[PathBuf],
    wake: Arc<tokio::sync::Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let names: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| p.file_name().map(PathBuf::from))
        .collect();
    let handler = move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            // Only changes: inotify also reports opens and reads (`Access`), and every check
            // opens the files it watches, so waking on those would re-check in a busy loop.
            if !changes_content(&ev.kind) {
                return;
            }
            let ours = ev
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)));
            if ours {
                wake.notify_one();
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(error) => {
            tracing::warn!(%error, "cannot watch TLS files; re-checking every second");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(%error, dir = %dir.display(), "cannot watch TLS directory");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod watch_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::fs_watcher;

    /// Regression: reading a watched file (as every check does) must not wake the reload loop,
    /// or the loop re-checks forever and takes a whole core while idle.
    #[tokio::test]
    async fn reading_a_watched_file_does_not_wake_the_reload_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tls.crt");
        std::fs::write(&path, "one").expect("write");
        let wake = Arc::new(tokio::sync::Notify::new());
        let _watcher = fs_watcher(std::slice::from_ref(&path), wake.clone()).expect("watcher");
        std::fs::read(&path).expect("read");
        let woke = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
        assert!(woke.is_err(), "a read woke the reload loop");
        std::fs::write(&path, "two").expect("write");
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("a write must wake the reload loop");
    }
}
