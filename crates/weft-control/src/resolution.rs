//! The store as the resolution service's source of namespace dtabs (`weft_resolve`), so
//! proxies with `interpreter: {kind: control}` bind under the dtabs stored here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use weft_naming::Dtab;
use weft_resolve::{DtabSource, LoadedFuture};

use crate::{DtabStore, Versioned};

/// Per namespace: its dtab as the service sees it, and whether the store has answered for it
/// yet. One forwarding task per namespace, shared by every stream.
pub(crate) struct StoreDtabs {
    store: Arc<dyn DtabStore>,
    namespaces: Mutex<HashMap<String, Namespace>>,
}

#[derive(Clone)]
struct Namespace {
    dtab: watch::Receiver<Option<(Dtab, String)>>,
    loaded: watch::Receiver<bool>,
}

impl StoreDtabs {
    pub(crate) fn new(store: Arc<dyn DtabStore>) -> StoreDtabs {
        StoreDtabs {
            store,
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    fn namespace(&self, name: &str) -> Namespace {
        // Each critical section leaves the map consistent, so a poisoned lock is usable.
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces
            .entry(name.to_owned())
            .or_insert_with(|| follow(self.store.clone(), name.to_owned()))
            .clone()
    }
}

impl DtabSource for StoreDtabs {
    fn watch(&self, namespace: &str) -> watch::Receiver<Option<(Dtab, String)>> {
        self.namespace(namespace).dtab
    }

    fn loaded(&self, namespace: &str) -> LoadedFuture {
        let mut loaded = self.namespace(namespace).loaded;
        Box::pin(async move {
            let _ = loaded.wait_for(|l| *l).await;
        })
    }
}

fn pair(v: &Option<Versioned>) -> Option<(Dtab, String)> {
    v.as_ref().map(|v| (v.dtab.clone(), v.version.clone()))
}

/// Reads `name` from the store until a read succeeds (a store that cannot be reached says
/// nothing rather than "absent"), then forwards every change the store's watch sees.
fn follow(store: Arc<dyn DtabStore>, name: String) -> Namespace {
    let (dtab_tx, dtab) = watch::channel(None);
    let (loaded_tx, loaded) = watch::channel(false);
    tokio::spawn(async move {
        let mut changes = store.watch(&name);
        let mut backoff = Duration::from_millis(100);
        loop {
            match store.get(&name).await {
                Ok(v) => {
                    dtab_tx.send_replace(pair(&v));
                    break;
                }
                Err(error) => {
                    tracing::debug!(namespace = %name, %error, "cannot read the namespace yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        loaded_tx.send_replace(true);
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = dtab_tx.closed() => break,
            }
            let next = pair(&changes.borrow_and_update());
            dtab_tx.send_if_modified(|cur| {
                let changed = *cur != next;
                if changed {
                    *cur = next;
                }
                changed
            });
        }
    });
    Namespace { dtab, loaded }
}
