//! [`MemoryStore`]: dtabs in this process only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;
use weft_naming::Dtab;

use super::{DtabStore, StoreError, StoreFuture, Versioned, Watchers};

/// Dtabs kept in memory and lost on exit (`storage: {kind: memory}`, the default): for
/// trying the control plane out and for tests. Versions are a counter shared by all
/// namespaces, like etcd's revision.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    watchers: Watchers,
}

#[derive(Default)]
struct State {
    revision: u64,
    dtabs: BTreeMap<String, Versioned>,
}

// === impl MemoryStore ===

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change below is a single insert or remove: a poisoned lock holds a
        // consistent map.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` under the lock and publishes the namespace's new value.
    fn write<T>(
        &self,
        ns: &str,
        change: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        let out = change(&mut state)?;
        let now = state.dtabs.get(ns).cloned();
        drop(state);
        self.watchers.publish(ns, now, 0);
        Ok(out)
    }
}

fn check_version(current: &Versioned, expected: Option<&str>) -> Result<(), StoreError> {
    match expected {
        Some(v) if v != current.version => Err(StoreError::conflict(&current.version)),
        _ => Ok(()),
    }
}

fn next(state: &mut State, dtab: &Dtab) -> Versioned {
    state.revision += 1;
    Versioned {
        version: state.revision.to_string(),
        dtab: dtab.clone(),
    }
}

impl DtabStore for MemoryStore {
    fn list(&self) -> StoreFuture<'_, Vec<String>> {
        let names = self.lock().dtabs.keys().cloned().collect();
        Box::pin(async move { Ok(names) })
    }

    fn get<'a>(&'a self, ns: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let found = self.lock().dtabs.get(ns).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn create<'a>(&'a self, ns: &'a str, dtab: &'a Dtab) -> StoreFuture<'a, String> {
        let out = self.write(ns, |state| {
            if state.dtabs.contains_key(ns) {
                return Err(StoreError::exists(ns));
            }
            let v = next(state, dtab);
            let version = v.version.clone();
            state.dtabs.insert(ns.to_owned(), v);
            Ok(version)
        });
        Box::pin(async move { out })
    }

    fn update<'a>(
        &'a self,
        ns: &'a str,
        dtab: &'a Dtab,
        expected: Option<&'a str>,
    ) -> StoreFuture<'a, String> {
        let out = self.write(ns, |state| {
            let current = state
                .dtabs
                .get(ns)
                .ok_or_else(|| StoreError::not_found(ns))?;
            check_version(current, expected)?;
            let v = next(state, dtab);
            let version = v.version.clone();
            state.dtabs.insert(ns.to_owned(), v);
            Ok(version)
        });
        Box::pin(async move { out })
    }

    fn delete<'a>(&'a self, ns: &'a str, expected: Option<&'a str>) -> StoreFuture<'a, ()> {
        let out = self.write(ns, |state| {
            let current = state
                .dtabs
                .get(ns)
                .ok_or_else(|| StoreError::not_found(ns))?;
            check_version(current, expected)?;
            state.dtabs.remove(ns);
            Ok(())
        });
        Box::pin(async move { out })
    }

    fn watch(&self, ns: &str) -> watch::Receiver<Option<Versioned>> {
        self.watchers
            .subscribe(ns, || self.lock().dtabs.get(ns).cloned())
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_contract() {
        crate::store::tests::contract(&MemoryStore::new()).await;
    }
}
