//! The dtab store: named namespaces, each holding a dtab and a version, behind one trait
//! ([`DtabStore`]) with three backends ([`MemoryStore`], [`FsStore`], [`EtcdStore`]).

mod error;
mod etcd;
mod fs;
mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use weft_naming::Dtab;

pub use error::StoreError;
pub use etcd::EtcdStore;
pub use fs::FsStore;
pub use memory::MemoryStore;

/// A future returned by a [`DtabStore`] operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A dtab with the version it is stored at.
///
/// The version is opaque: etcd's `mod_revision` of the key for [`EtcdStore`], a content hash
/// for [`FsStore`], a counter for [`MemoryStore`]. The HTTP API sends it as the `ETag` and
/// takes it back in `If-Match`, as namerd did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The version, never empty.
    pub version: String,
    /// The dtab.
    pub dtab: Dtab,
}

/// Where dtabs are stored. Namespace names are checked by the caller with
/// [`valid_namespace`]; a store may refuse others with [`StoreError::is_invalid`].
///
/// Writes are atomic: a write either stores the whole dtab at a new version or changes
/// nothing. A store that cannot reach its backend answers [`StoreError::is_unavailable`].
pub trait DtabStore: Send + Sync + 'static {
    /// The namespaces that exist, sorted.
    fn list(&self) -> StoreFuture<'_, Vec<String>>;

    /// The namespace's dtab and version; `None` if the namespace does not exist.
    fn get<'a>(&'a self, ns: &'a str) -> StoreFuture<'a, Option<Versioned>>;

    /// Creates the namespace with `dtab`; returns the new version.
    /// Errors: [`StoreError::is_exists`] if the namespace already exists.
    fn create<'a>(&'a self, ns: &'a str, dtab: &'a Dtab) -> StoreFuture<'a, String>;

    /// Replaces the namespace's dtab; returns the new version. With `expected`, only if the
    /// stored version is still `expected` (compare-and-set).
    /// Errors: [`StoreError::is_not_found`] if absent, [`StoreError::is_conflict`] (with the
    /// current version) if the version differs.
    fn update<'a>(
        &'a self,
        ns: &'a str,
        dtab: &'a Dtab,
        expected: Option<&'a str>,
    ) -> StoreFuture<'a, String>;

    /// Deletes the namespace; with `expected`, only at that version.
    /// Errors: not found, or conflict, as for [`DtabStore::update`].
    fn delete<'a>(&'a self, ns: &'a str, expected: Option<&'a str>) -> StoreFuture<'a, ()>;

    /// A live view of one namespace: the receiver's value is the latest known version
    /// (`None`: the namespace does not exist, or is not known yet), and it changes with
    /// every new version. When the backend is unreachable the last known value stays and the
    /// watch resumes when it returns. Must be called inside a tokio runtime.
    fn watch(&self, ns: &str) -> watch::Receiver<Option<Versioned>>;

    /// Whether the backend answers right now; `Err` says why not (for `/ready`).
    fn check(&self) -> StoreFuture<'_, ()>;
}

/// Whether `ns` may name a namespace: 1 to 128 characters of `A-Z a-z 0-9 - _ .`, not
/// starting with `.` (namerd allowed the same characters; the limit keeps keys and file
/// names short).
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 128
        && !ns.starts_with('.')
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Builds the configured store. Must be called inside a tokio runtime.
///
/// # Errors
/// The fs directory cannot be created or read; the etcd password file cannot be read. An
/// etcd cluster that is down is not an error: the store connects when it can.
pub async fn from_config(
    config: &weft_config::StorageConfig,
) -> Result<Arc<dyn DtabStore>, StoreError> {
    Ok(match config {
        weft_config::StorageConfig::Memory => Arc::new(MemoryStore::new()),
        weft_config::StorageConfig::Fs { dir } => Arc::new(FsStore::open(dir)?),
        weft_config::StorageConfig::Etcd(c) => Arc::new(EtcdStore::connect(c).await?),
    })
}

/// The watch channels of one store, one per watched namespace, each with the backend
/// position its value was read at so that an older read never overwrites a newer one.
#[derive(Default)]
struct Watchers {
    map: std::sync::Mutex<std::collections::HashMap<String, Watched>>,
}

struct Watched {
    tx: watch::Sender<Option<Versioned>>,
    at: i64,
}

impl Watchers {
    /// A receiver for `ns`; a new channel starts at `initial()`.
    fn subscribe(
        &self,
        ns: &str,
        initial: impl FnOnce() -> Option<Versioned>,
    ) -> watch::Receiver<Option<Versioned>> {
        let mut map = self.lock();
        if let Some(w) = map.get(ns) {
            return w.tx.subscribe();
        }
        let (tx, rx) = watch::channel(initial());
        map.insert(ns.to_owned(), Watched { tx, at: i64::MIN });
        rx
    }

    /// Publishes what the backend said about `ns` at position `at` (e.g. an etcd revision;
    /// 0 for stores without one), unless a newer position was already published or the value
    /// is unchanged. Channels nobody receives any more are dropped.
    fn publish(&self, ns: &str, value: Option<Versioned>, at: i64) {
        let mut map = self.lock();
        let Some(w) = map.get_mut(ns) else {
            return;
        };
        if w.tx.receiver_count() == 0 {
            map.remove(ns);
            return;
        }
        if at < w.at {
            return;
        }
        w.at = at;
        w.tx.send_if_modified(|cur| {
            let changed = *cur != value;
            if changed {
                *cur = value;
            }
            changed
        });
    }

    /// The namespaces someone watches.
    fn namespaces(&self) -> Vec<String> {
        let mut map = self.lock();
        map.retain(|_, w| w.tx.receiver_count() > 0);
        map.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Watched>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is
        // one insert, remove or send), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod tests;
