//! Live config reload for `weft proxy`: on SIGHUP, and when the config file changes
//! (watched, debounced), the file goes through the same two-stage conversion as at start
//! (`weft_config::Config::parse`) and the proxy applies it in place
//! (`weft_proxy::Reloader`). A file that does not load, or changes what only a restart can
//! change, keeps the config in force; either way the outcome is logged, counted in
//! `weft_config_reloads_total{result}` and shown under `reload` on the admin's
//! `/config.json`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::Signal;
use tokio::sync::Notify;
use weft_admin::{AdminState, ReloadFailure, ReloadStatus};
use weft_config::Config;
use weft_proxy::{Reloaded, Reloader};
use weft_telemetry::Metrics;

/// Quiet time after the last file event before reading the file: editors write in several
/// steps (truncate, write, rename, chmod).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A file that fails to load after a change may have been read half-written: it is read
/// once more after this long (or after the next change) before the failure counts.
const SETTLE: Duration = Duration::from_millis(500);

/// Why a reload was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Signal,
    File,
}

/// The reload machinery of one proxy process.
pub(crate) struct Reload {
    path: PathBuf,
    reloader: Reloader,
    state: Arc<AdminState>,
    metrics: Metrics,
    /// Hash of the bytes of the config in force.
    version: u64,
    /// Hash of the bytes of the last file that failed, so that file events that do not
    /// change it are not counted again.
    failed: Option<u64>,
    /// Hash of the bytes the last attempt read (`None`: unreadable).
    tried: Option<u64>,
    status: ReloadStatus,
    changed: Arc<Notify>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// What one attempt came to.
enum Attempt {
    Done(Reloaded),
    /// The file did not load (unreadable, not YAML, invalid): maybe read half-written.
    Invalid(ReloadFailure),
    /// The file is valid but cannot be applied in place, or what it names cannot be built.
    Refused(ReloadFailure),
}

// === impl Reload ===

impl Reload {
    /// Sets up reloading `path` into `reloader`, watching the file unless `watch` is false.
    /// Call before announcing the listeners: a change made after that is seen.
    pub(crate) fn new(
        path: PathBuf,
        reloader: Reloader,
        state: Arc<AdminState>,
        metrics: Metrics,
        watch: bool,
    ) -> Reload {
        let version = std::fs::read(&path).map_or(0, |b| hash(&b));
        let changed = Arc::new(Notify::new());
        let watcher = if watch {
            watch_file(&path, changed.clone())
        } else {
            None
        };
        let status = ReloadStatus {
            file: Some(path.display().to_string()),
            version: format!("{version:016x}"),
            loaded_at: unix_now(),
            ..ReloadStatus::default()
        };
        state.set_reload_status(status.clone());
        Reload {
            path,
            reloader,
            state,
            metrics,
            version,
            failed: None,
            tried: None,
            status,
            changed,
            _watcher: watcher,
        }
    }

    /// Reloads on every SIGHUP (`hup`) and every change of the file, until the process ends.
    pub(crate) async fn run(mut self, mut hup: Option<Signal>) {
        let changed = self.changed.clone();
        loop {
            let trigger = tokio::select! {
                Some(()) = recv(&mut hup) => Trigger::Signal,
                () = changed.notified() => {
                    debounce(&changed).await;
                    Trigger::File
                }
            };
            let mut attempt = self.attempt(trigger).await;
            if trigger == Trigger::File && matches!(attempt, Some(Attempt::Invalid(_))) {
                tokio::select! {
                    () = tokio::time::sleep(SETTLE) => {}
                    () = changed.notified() => debounce(&changed).await,
                }
                attempt = self.attempt(trigger).await;
            }
            if let Some(attempt) = attempt {
                self.report(trigger, attempt);
            }
        }
    }

    /// Reads, validates and applies the file. `None`: a file event that left the file as it
    /// was when it last failed (already reported).
    async fn attempt(&mut self, trigger: Trigger) -> Option<Attempt> {
        let origin = self.path.display().to_string();
        self.tried = None;
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(e) => {
                return Some(Attempt::Invalid(failure(
                    format!("{origin}: cannot read: {e}"),
                    Some(origin),
                    None,
                    false,
                )))
            }
        };
        let version = hash(&bytes);
        self.tried = Some(version);
        if version == self.version {
            return Some(Attempt::Done(Reloaded::Unchanged));
        }
        if trigger == Trigger::File && self.failed == Some(version) {
            tracing::debug!("config file event without a change since the failed reload");
            return None;
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                let msg = format!("{origin}: not UTF-8 text");
                return Some(Attempt::Invalid(failure(msg, Some(origin), None, false)));
            }
        };
        let config = match Config::parse(&text, &origin) {
            Ok(c) => c,
            Err(e) => {
                let at = e.line().zip(e.column());
                let file = Some(e.origin().to_string());
                return Some(Attempt::Invalid(failure(e.to_string(), file, at, false)));
            }
        };
        let json = serde_json::to_value(&config).unwrap_or(serde_json::Value::Null);
        let objectives = crate::telemetry_sources::objectives(&config);
        match self.reloader.apply(config) {
            Ok(done) => {
                self.version = version;
                self.failed = None;
                self.status.version = format!("{version:016x}");
                if let Reloaded::Applied { namers, .. } = &done {
                    self.status.loaded_at = unix_now();
                    self.state.set_config(json);
                    self.metrics.history().set_objectives(objectives);
                    if *namers {
                        let statuses = self.reloader.namer_statuses();
                        self.metrics
                            .set_namer_source(crate::telemetry_sources::namer_source(
                                statuses.clone(),
                            ));
                        self.state.set_namers(statuses);
                    }
                }
                Some(Attempt::Done(done))
            }
            Err(e) => {
                let restart = e.needs_restart();
                let msg = format!("{origin}: {e}");
                Some(Attempt::Refused(failure(msg, Some(origin), None, restart)))
            }
        }
    }

    /// Logs, counts and shows the outcome of one reload.
    fn report(&mut self, trigger: Trigger, attempt: Attempt) {
        let now = unix_now();
        let trigger = match trigger {
            Trigger::Signal => "SIGHUP",
            Trigger::File => "file change",
        };
        self.status.reloads += 1;
        self.status.last_attempt_at = Some(now);
        let ok = match attempt {
            Attempt::Done(Reloaded::Unchanged) => {
                tracing::info!(trigger, "config unchanged: nothing to reload");
                true
            }
            Attempt::Done(Reloaded::Applied { routers, namers }) => {
                tracing::info!(
                    trigger,
                    version = %self.status.version,
                    routers = %routers.join(", "),
                    namers,
                    "config reloaded"
                );
                true
            }
            Attempt::Invalid(mut failure) | Attempt::Refused(mut failure) => {
                tracing::error!(
                    trigger,
                    error = %failure.message,
                    "config reload failed; the config in force stays"
                );
                failure.at = now;
                self.status.last_error = Some(failure);
                self.failed = self.tried;
                false
            }
        };
        self.status.last_result = Some(if ok { "ok" } else { "error" });
        self.metrics.config_reloaded(ok);
        self.state.set_reload_status(self.status.clone());
    }
}

fn failure(
    message: String,
    file: Option<String>,
    at: Option<(usize, usize)>,
    needs_restart: bool,
) -> ReloadFailure {
    ReloadFailure {
        at: 0,
        message,
        file,
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
        needs_restart,
    }
}

/// The next SIGHUP; never, without a handler.
async fn recv(hup: &mut Option<Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until no change has come for [`DEBOUNCE`].
async fn debounce(changed: &Notify) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(DEBOUNCE) => return,
            () = changed.notified() => {}
        }
    }
}

/// The version of a config file: its bytes hashed (SipHash with fixed keys: the same bytes
/// give the same version in every process).
fn hash(bytes: &[u8]) -> u64 {
    #[allow(deprecated)] // SipHasher: stable keys by design; the replacement is not in std.
    let mut h = std::hash::SipHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Watches the file's directory (editors and Kubernetes ConfigMaps replace files by
/// renaming, which a watch on the file itself would lose) for changes of the file, or of the
/// `..data` link through which a ConfigMap volume swaps its files. `None` (with a warning)
/// when no watch can be set up: SIGHUP still works.
fn watch_file(path: &Path, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Only changes: inotify also reports opens and reads, and every reload reads the
        // file, so waking on those would reload in a loop.
        if !changes_content(&event.kind) {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n == "..data")
        });
        if ours {
            changed.notify_one();
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match watched {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the config file; reload with SIGHUP");
            None
        }
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
