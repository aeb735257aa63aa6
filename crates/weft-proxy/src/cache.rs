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

    /// The value for `key` (or a borrowed form of it, e.g. `&[u8]` for `Box<[u8]>`), if
    /// present.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).cloned()
    }

    /// Inserts `value` for `key` and returns the value then in the cache (an earlier
    /// insertion wins). When the cache is full it starts over first.
    pub(crate) fn insert(&self, key: K, value: V) -> V {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max && !map.contains_key(&key) {
            map.clear();
        }
        map.entry(key).or_insert(value).clone()
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

    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, V, FastHash>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_starts_over() {
        let c: Cache<u32, u32> = Cache::new(2);
        assert_eq!(c.get_or_insert_with(&1, || 10), 10);
        assert_eq!(c.get_or_insert_with(&1, || 99), 10, "kept");
        c.get_or_insert_with(&2, || 20);
        assert_eq!(c.get_or_insert_with(&3, || 30), 30);
        assert_eq!(c.get_or_insert_with(&1, || 11), 11, "started over");
        assert_eq!(c.insert(1, 12), 11, "an earlier value wins");
        let b: Cache<Box<[u8]>, u32> = Cache::new(2);
        b.insert(b"books".as_slice().into(), 1);
        assert_eq!(
            b.get(b"books".as_slice()),
            Some(1),
            "found by a borrowed key"
        );
    }
}
