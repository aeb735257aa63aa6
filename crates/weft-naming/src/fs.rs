//! [`FsNamer`]: service discovery from a directory of files, one file per service.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::{
    publish_if_changed, AddrSet, Address, BoundName, Namer, NamerState, NamerStatus, Path,
    Resolution,
};

/// How often the directory is rescanned, in addition to inotify events.
const RESCAN: Duration = Duration::from_secs(1);
/// Quiet time after a file event before reading, so a multi-step write is read once.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// A known file modified less than this long ago may still be being written (truncated, then
/// written in several steps): its read waits until it has been quiet this long, so a rescan
/// between the truncation and the write does not publish an empty or half-written set.
const SETTLE: Duration = DEBOUNCE;
/// Files larger than this are an error rather than read into memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The fs namer: a directory with one file per service (Linkerd's `io.l5d.fs`).
///
/// The first residual label is the file name, which is the service name; the rest of the
/// residual is ignored. The bound id is the namer prefix plus that label (e.g. `/#/fs/rates`).
/// Each line of a file is `host port` or `host port * weight`, where host is an IP address or
/// `localhost` (127.0.0.1), port is 1..65535 and weight a non-negative number (default 1); `#`
/// starts a comment and blank lines are ignored. Hidden files (`.name`) and backups (`name~`)
/// are skipped.
///
/// - missing file: [`Resolution::Neg`]; empty file: bound with no addresses;
/// - a bad line: the file keeps its last good set, the error (file and line) is logged with
///   `tracing::warn!` and listed by [`FsNamer::errors`]; with no last good set the name is
///   [`Resolution::Failed`] with `<file>:<line>: <problem>`.
///
/// Changes are picked up through inotify (via `notify`) and a rescan every second as a safety
/// net (editors often replace files by renaming), so they reach watchers within about a
/// second. The directory is read once in [`FsNamer::new`]; the watching task stops when the
/// last clone of the namer is dropped.
#[derive(Clone)]
pub struct FsNamer {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    prefix: Path,
    state: Mutex<State>,
    status: NamerStatus,
}

#[derive(Default)]
struct State {
    services: HashMap<String, Service>,
    /// Current problems, by file name.
    errors: BTreeMap<String, String>,
}

struct Service {
    tx: watch::Sender<Resolution>,
    /// Modification time and length when last read; `None` when the file does not exist.
    stamp: Option<Stamp>,
    last_good: Option<AddrSet>,
}

type Stamp = (Option<SystemTime>, u64);

// === impl FsNamer ===

impl FsNamer {
    /// A namer for `root_dir` with ids under `/#/fs`. Must be called inside a tokio runtime
    /// (it spawns the watching task); outside one the directory is read once and not watched.
    pub fn new(root_dir: PathBuf) -> FsNamer {
        FsNamer::with_prefix(root_dir, Path::from_labels(["#", "fs"]))
    }

    /// Like [`FsNamer::new`], with bound ids under `prefix` (the prefix the namer is
    /// configured at, e.g. `/#/disco`).
    pub fn with_prefix(root_dir: PathBuf, prefix: Path) -> FsNamer {
        let status = NamerStatus::new("fs", root_dir.display().to_string());
        let inner = Arc::new(Inner {
            root: root_dir,
            prefix,
            state: Mutex::new(State::default()),
            status,
        });
        inner.scan(true);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(watch_dir(Arc::downgrade(&inner)));
            }
            Err(_) => {
                tracing::warn!(dir = %inner.root.display(), "fs namer outside a tokio runtime: not watching");
            }
        }
        FsNamer { inner }
    }

    /// The current problems, one per bad file: `<file>:<line>: <problem>`, sorted by file.
    pub fn errors(&self) -> Vec<String> {
        self.inner.lock().errors.values().cloned().collect()
    }

    /// Parses the contents of one service file (the format is described on [`FsNamer`]):
    /// its addresses in file order, duplicates kept.
    ///
    /// # Errors
    /// The first bad line: its number (1-based) and what is wrong with it.
    pub fn parse_service_file(bytes: &[u8]) -> Result<Vec<Address>, (usize, String)> {
        parse_addrs(bytes)
    }
}

impl Namer for FsNamer {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let Some(name) = residual.label(0).and_then(|l| std::str::from_utf8(l).ok()) else {
            return watch::channel(Resolution::Neg).1;
        };
        let mut state = self.inner.lock();
        let service = state
            .services
            .entry(name.to_string())
            .or_insert_with(|| Service {
                // Not in the last scan, so the file does not exist (yet).
                tx: watch::channel(Resolution::Neg).0,
                stamp: None,
                last_good: None,
            });
        service.tx.subscribe()
    }

    /// The directory's health: stale or error while it cannot be read or a service file does
    /// not parse (each such scan counts an error), ok otherwise. Watched names are not counted.
    fn status(&self) -> Option<NamerStatus> {
        Some(self.inner.status.clone())
    }
}

// === impl Inner ===

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Each critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the directory and publishes what changed; returns true when a changed file was
    /// left for later because it is still settling ([`SETTLE`]). `force` re-reads every file even if its
    /// modification time and length are unchanged.
    fn scan(&self, force: bool) -> bool {
        let listing = match list(&self.root) {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(dir = %self.root.display(), error = %e, "fs namer cannot read its directory");
                self.status
                    .failed(format!("cannot read {}: {e}", self.root.display()));
                return false;
            }
        };
        let present: HashSet<String> = listing.iter().map(|(n, _)| n.clone()).collect();
        let now = SystemTime::now();
        let mut settling = false;
        let to_read: Vec<(String, Stamp)> = {
            let state = self.lock();
            listing
                .into_iter()
                .filter(|(name, stamp)| {
                    let last = state.services.get(name).and_then(|s| s.stamp);
                    if !force && last == Some(*stamp) {
                        return false;
                    }
                    // A file we already serve that changed a moment ago: read it once it is
                    // quiet. New files are read at once (nothing to keep serving meanwhile).
                    let fresh = stamp
                        .0
                        .is_some_and(|m| now.duration_since(m).map_or(true, |age| age < SETTLE));
                    if last.is_some() && last != Some(*stamp) && fresh {
                        settling = true;
                        return false;
                    }
                    true
                })
                .collect()
        };
        let read: Vec<(String, Stamp, Result<Vec<Address>, String>)> = to_read
            .into_iter()
            .map(|(name, stamp)| {
                let file = self.root.join(&name);
                let parsed = read_file(&file);
                (name, stamp, parsed)
            })
            .collect();

        let read_any = !read.is_empty();
        let mut new_error = None;
        let mut state = self.lock();
        let State { services, errors } = &mut *state;
        for (name, stamp, parsed) in read {
            let id = self.prefix.concat(&Path::from_labels([name.as_bytes()]));
            let service = services.entry(name.clone()).or_insert_with(|| Service {
                tx: watch::channel(Resolution::Neg).0,
                stamp: None,
                last_good: None,
            });
            service.stamp = Some(stamp);
            let resolution = match parsed {
                Ok(addrs) => {
                    errors.remove(&name);
                    let addrs: AddrSet = addrs.into();
                    service.last_good = Some(addrs.clone());
                    Resolution::Bound(BoundName::new(id, addrs))
                }
                Err(message) => {
                    // Once per distinct error, not on every rescan of the same bad file.
                    if errors.get(&name) != Some(&message) {
                        tracing::warn!(error = %message, keeping_last_good = service.last_good.is_some(), "fs namer: bad service file");
                    }
                    errors.insert(name.clone(), message.clone());
                    new_error = Some(message.clone());
                    match &service.last_good {
                        Some(addrs) => Resolution::Bound(BoundName::new(id, addrs.clone())),
                        None => Resolution::Failed(message.into()),
                    }
                }
            };
            publish(&service.tx, resolution);
        }
        // Files that went away.
        for (name, service) in services.iter_mut() {
            if service.stamp.is_some() && !present.contains(name) {
                service.stamp = None;
                service.last_good = None;
                errors.remove(name);
                publish(&service.tx, Resolution::Neg);
            }
        }
        services.retain(|_, s| s.stamp.is_some() || s.tx.receiver_count() > 0);
        match (new_error, errors.values().next()) {
            (Some(e), _) => self.status.failed(e),
            (None, Some(_)) => {} // still the same bad file: counted when it was read
            (None, None) if read_any || self.status.state() != NamerState::Ok => {
                self.status.updated()
            }
            (None, None) => {}
        }
        settling
    }
}

fn publish(tx: &watch::Sender<Resolution>, new: Resolution) {
    publish_if_changed(tx, new);
}

/// The service files in `dir` with their stamps. A missing directory has no files.
fn list(dir: &std::path::Path) -> std::io::Result<Vec<(String, Stamp)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: cannot be a label we look up
        };
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        // Follows symlinks, so a link to a file counts as that file.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.push((name, (meta.modified().ok(), meta.len())));
        }
    }
    Ok(out)
}

fn read_file(file: &std::path::Path) -> Result<Vec<Address>, String> {
    let shown = file.display();
    let meta = std::fs::metadata(file).map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{shown}: larger than {MAX_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("{shown}: {e}"))?;
    parse_addrs(&bytes).map_err(|(line, problem)| format!("{shown}:{line}: {problem}"))
}

/// Parses a service file; errors are `(line number, problem)`.
fn parse_addrs(bytes: &[u8]) -> Result<Vec<Address>, (usize, String)> {
    let mut addrs = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let line = std::str::from_utf8(line).map_err(|_| (n, "not valid UTF-8".to_string()))?;
        let line = line.split('#').next().unwrap_or("");
        let words: Vec<&str> = line.split_whitespace().collect();
        let (host, port, weight) = match words.as_slice() {
            [] => continue,
            [host, port] => (*host, *port, None),
            [host, port, "*", weight] => (*host, *port, Some(*weight)),
            _ => {
                return Err((
                    n,
                    format!("expected `host port` or `host port * weight`, found {line:?}"),
                ))
            }
        };
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => host.parse::<IpAddr>().map_err(|_| {
                (
                    n,
                    format!("host {host:?} is not an IP address or localhost"),
                )
            })?,
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err((n, format!("port {port:?} is not in 1..65535"))),
        };
        let weight = match weight.map(str::parse::<f64>) {
            None => 1.0,
            Some(Ok(w)) if w.is_finite() && w >= 0.0 => w,
            Some(_) => {
                let w = weight.unwrap_or_default();
                return Err((n, format!("weight {w:?} is not a non-negative number")));
            }
        };
        addrs.push(Address {
            addr: SocketAddr::new(ip, port),
            weight,
            meta: None,
        });
    }
    Ok(addrs)
}

/// Rescans on file events and every [`RESCAN`], until the namer is dropped.
async fn watch_dir(inner: Weak<Inner>) {
    let events = Arc::new(Notify::new());
    let mut watcher = None;
    let mut ticker = tokio::time::interval(RESCAN);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(namer) = inner.upgrade() else { return };
        if watcher.is_none() {
            watcher = start_watcher(&namer.root, events.clone());
        }
        drop(namer);
        let force = tokio::select! {
            _ = ticker.tick() => false,
            () = events.notified() => {
                tokio::time::sleep(DEBOUNCE).await;
                true
            }
        };
        let Some(namer) = inner.upgrade() else { return };
        // File reads block; keep them off the async workers.
        let mut settling = run_scan(namer, force).await;
        while settling {
            tokio::time::sleep(SETTLE).await;
            let Some(namer) = inner.upgrade() else { return };
            settling = run_scan(namer, false).await;
        }
    }
}

/// One scan on the blocking pool (file reads block); true when a file is still settling.
async fn run_scan(namer: Arc<Inner>, force: bool) -> bool {
    tokio::task::spawn_blocking(move || namer.scan(force))
        .await
        .unwrap_or(false)
}

fn start_watcher(dir: &std::path::Path, events: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            events.notify_one();
        }
    };
    let mut watcher = notify::recommended_watcher(handler)
        .inspect_err(|e| tracing::debug!(error = %e, "fs namer: no file watcher"))
        .ok()?;
    match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            // E.g. the directory does not exist yet; the periodic rescan covers it and we
            // try again on the next round.
            tracing::debug!(dir = %dir.display(), error = %e, "fs namer: cannot watch directory");
            None
        }
    }
}

#[cfg(test)]
#[path = "fs_tests.rs"]
mod tests;
