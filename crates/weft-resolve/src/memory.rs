//! [`MemoryDtabs`]: namespace dtabs held in memory, a [`DtabSource`] for tests, demos and
//! the control plane's `kind: memory` store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use weft_naming::{publish_if_changed, Dtab};

use crate::{DtabSource, NamespaceDtab};

type Namespaces = HashMap<String, (u64, watch::Sender<NamespaceDtab>)>;

/// Namespace dtabs in memory, each with a version counting its changes (`1`, `2`, ...).
#[derive(Default)]
pub struct MemoryDtabs {
    namespaces: Mutex<Namespaces>,
}

impl MemoryDtabs {
    /// An empty set of namespaces.
    pub fn new() -> MemoryDtabs {
        MemoryDtabs::default()
    }

    /// Creates or replaces `namespace`'s dtab; returns its new version. Watchers see the
    /// change at once.
    pub fn set(&self, namespace: &str, dtab: Dtab) -> String {
        let mut namespaces = self.lock();
        let (version, tx) = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| (0, watch::channel(None).0));
        *version += 1;
        let v = version.to_string();
        publish_if_changed(tx, Some((dtab, v.clone())));
        v
    }

    /// Deletes `namespace`: watchers see `None` (names bound under it fail).
    pub fn remove(&self, namespace: &str) {
        if let Some((_, tx)) = self.lock().get(namespace) {
            tx.send_replace(None);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Namespaces> {
        // Every critical section is one lookup or insert: a poisoned map is consistent.
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl DtabSource for MemoryDtabs {
    fn watch(&self, namespace: &str) -> watch::Receiver<NamespaceDtab> {
        self.lock()
            .entry(namespace.to_owned())
            .or_insert_with(|| (0, watch::channel(None).0))
            .1
            .subscribe()
    }
}
