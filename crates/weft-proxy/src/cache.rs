//! The bounded map behind every cache the request path keeps (the per-name state of
//! `Clients`, the router's header-spelling maps). Keys can come from requests (a Host header
//! becomes a name, an `l5d-dtab` header a dtab), so every map has a bound; what happens at
//! the bound is the caller's choice.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// The hasher of the per-request caches. SipHash was the largest single cost of their
/// lookups per request; foldhash is several times cheaper and still seeded per process.
type FastHash = foldhash::fast::RandomState;

/// A map of at most `max` entries, read-mostly (a read lock per lookup).
#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    map: RwLock<HashMap<K, V, FastHash>>,
    max: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// An empty cache of at most `max` entries.
    pub(crate) fn new(max: usize) -> Cache<K, V> {
        Cache {
            map: RwLock::default(),
            max,
        }
    }

    /// The value for `key`, if present.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.read().get(key).cloned()
    }

    /// The value for `key`, made with `make` if absent. When the cache is full it starts
    /// over: values in use stay alive with their users and are made again on the next use.
    pub(crate) fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.read().get(key) {
            return v.clone();
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max && !map.contains_key(key) {
            map.clear();
        }
        map.entry(key.clone()).or_insert_with(make).clone()
    }

    /// Looks `key` up with `find`; if that finds nothing, adds to its entry with `add`
    /// (creating the entry if there is room) or, when the cache is full, answers `full()`.
    pub(crate) fn find_or_add<R>(
        &self,
        key: &K,
        find: impl Fn(&V) -> Option<R>,
        add: impl FnOnce(&mut V) -> R,
        full: impl FnOnce() -> R,
    ) -> R
    where
        V: Default,
    {
        if let Some(r) = self.read().get(key).and_then(&find) {
            return r;
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max && !map.contains_key(key) {
            return full();
        }
        let entry = map.entry(key.clone()).or_default();
        match find(entry) {
            Some(r) => r,
            None => add(entry),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, V, FastHash>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_starts_over_and_find_or_add_overflows() {
        let c: Cache<u32, u32> = Cache::new(2);
        assert_eq!(c.get_or_insert_with(&1, || 10), 10);
        assert_eq!(c.get_or_insert_with(&1, || 99), 10, "kept");
        c.get_or_insert_with(&2, || 20);
        assert_eq!(c.get_or_insert_with(&3, || 30), 30);
        assert_eq!(c.get_or_insert_with(&1, || 11), 11, "started over");

        let v: Cache<u32, Vec<u32>> = Cache::new(1);
        let add = |e: &mut Vec<u32>| {
            e.push(7);
            7
        };
        assert_eq!(v.find_or_add(&1, |e| e.first().copied(), add, || 0), 7);
        assert_eq!(v.find_or_add(&1, |e| e.first().copied(), |_| 8, || 0), 7);
        assert_eq!(
            v.find_or_add(&2, |e| e.first().copied(), |_| 9, || 0),
            0,
            "full"
        );
    }
}
