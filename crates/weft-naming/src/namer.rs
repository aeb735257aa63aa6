//! The [`Namer`] trait: live lookups of names under a prefix.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::{BoundName, NameTree, NamerStatus, Path};

/// What a namer knows about one residual path right now.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// Still loading; bindings that need this name stay pending.
    Pending,
    /// No such name (an `Alt` falls back to its next branch).
    Neg,
    /// The name exists. `id` is the full bound id (e.g. `/#/fs/rates`); `addrs` may be empty,
    /// which is *not* Neg: an `Alt` does not fall back past it.
    Bound(BoundName),
    /// The namer rewrote the name into a tree of other paths, which are bound again.
    Delegate(NameTree<Path>),
    /// An error with no last good state to fall back on; the message says what went wrong.
    Failed(Arc<str>),
}

/// A source of live name resolutions, such as the fs namer or DNS.
///
/// Namers are configured under a prefix (e.g. `/#/fs`); the binder offers them paths that
/// start with that prefix, with the prefix stripped. Implementations do their I/O in their
/// own tasks and publish on watch channels; `lookup` itself must not block.
pub trait Namer: Send + Sync + 'static {
    /// Starts (or joins) watching `residual`, the path with the namer's prefix stripped.
    ///
    /// The receiver's current value is what is known now (possibly
    /// [`Resolution::Pending`]); every later change is sent on it. A namer may stop updating a
    /// name once all receivers for it are dropped.
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution>;

    /// The health of the namer's backend, for namers that have one (shown on `/namers.json`,
    /// in metrics and by `weft check`); `None` (the default) for namers without a backend.
    fn status(&self) -> Option<NamerStatus> {
        None
    }
}

/// The end of one round of a namer's per-name watch task: waits `wait` (until the next
/// re-resolution) or until nobody watches `tx` any more; then, if nobody does, removes `key`
/// from the namer's `names` and returns true: the task should end.
///
/// Lookups subscribe while holding the `names` lock, so the final check cannot race with a
/// new lookup of the same name.
pub async fn wait_or_unwatched<K: Eq + Hash, V>(
    tx: &watch::Sender<Resolution>,
    wait: Duration,
    names: &Mutex<HashMap<K, V>>,
    key: &K,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = tx.closed() => {}
    }
    if !tx.is_closed() {
        return false;
    }
    // Every critical section on the map is one insert, get or remove: a poisoned lock is
    // still consistent.
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    if tx.receiver_count() == 0 {
        names.remove(key);
        return true;
    }
    false
}

/// Sends `new` on `tx` only if it differs from the current value, so receivers wake for
/// changes only; true when it was sent. Every namer publishes through this.
pub fn publish_if_changed<T: PartialEq>(tx: &watch::Sender<T>, new: T) -> bool {
    tx.send_if_modified(|cur| {
        let changed = *cur != new;
        if changed {
            *cur = new;
        }
        changed
    })
}
