//! [`NamerStatus`]: how a namer's backend is doing, for `/namers.json`, metrics and
//! `weft check`.
//!
//! A namer that talks to a backend (DNS, Consul, Kubernetes, Marathon, a watched directory)
//! keeps one status and reports every good answer and every failure to it. The state follows
//! the rule every namer keeps: a failure after a good answer leaves the last good endpoints
//! bound, so the namer is *stale* (routing continues on old data), not down.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A shared, cheap-to-clone record of one namer's backend health.
#[derive(Clone)]
pub struct NamerStatus {
    inner: Arc<Inner>,
}

struct Inner {
    kind: &'static str,
    backend: String,
    updates: AtomicU64,
    errors: AtomicU64,
    watched: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the backend last answered well (Unix seconds).
    last_ok: Option<f64>,
    /// The first failure since the last good answer (Unix seconds), and the latest error.
    failing_since: Option<f64>,
    last_error: Option<String>,
}

/// The health of a namer's backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamerState {
    /// No answer and no failure yet (no name watched, or the first answer is on its way).
    Pending,
    /// The last exchange with the backend succeeded.
    Ok,
    /// The backend is failing, but names keep the last good endpoints it gave.
    Stale,
    /// The backend has failed and never answered well: names that need it are failed.
    Error,
}

/// A point-in-time copy of a [`NamerStatus`], as served on `/namers.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamerSnapshot {
    /// The namer kind (`fs`, `dnssrv`, `consul`, `k8s`, `marathon`).
    pub kind: &'static str,
    /// What it talks to, e.g. `http://127.0.0.1:8500`, `system resolver`, a directory.
    pub backend: String,
    /// See [`NamerState`].
    pub state: NamerState,
    /// Unix seconds of the first failure of the current failing run (stale or error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<f64>,
    /// Unix seconds of the last good answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<f64>,
    /// The latest error, kept until the next good answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Good answers applied since start (each may or may not have changed any name).
    pub updates: u64,
    /// Failed exchanges with the backend since start (unreachable, bad status, malformed
    /// or oversized response).
    pub errors: u64,
    /// Names being watched now.
    pub watched: u64,
}

/// Counts one watched name while it lives; see [`NamerStatus::watching`].
pub struct WatchGuard(NamerStatus);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.inner.watched.fetch_sub(1, Ordering::Relaxed);
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl NamerStatus {
    /// A pending status for a namer of `kind` talking to `backend` (shown as is).
    pub fn new(kind: &'static str, backend: impl Into<String>) -> NamerStatus {
        NamerStatus {
            inner: Arc::new(Inner {
                kind,
                backend: backend.into(),
                updates: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                watched: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Records a good answer from the backend: the state becomes ok.
    pub fn updated(&self) {
        self.inner.updates.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.last_ok = Some(now_unix());
        s.failing_since = None;
        s.last_error = None;
    }

    /// Records that the backend is reachable without a new answer (a stream to it is open
    /// and quiet): the state becomes ok and the last good answer is now, but no update is
    /// counted.
    pub fn heard(&self) {
        let mut s = self.lock();
        s.last_ok = Some(now_unix());
        s.failing_since = None;
        s.last_error = None;
    }

    /// Records a failed exchange (`error` says what, e.g. `GET /v1/health/service/web:
    /// connection refused`): the state becomes stale after a good answer, error before one.
    pub fn failed(&self, error: impl fmt::Display) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.failing_since.get_or_insert_with(now_unix);
        s.last_error = Some(error.to_string());
    }

    /// Records that names were restored from a cache of the backend's answers written at
    /// `written_unix` (Unix seconds), e.g. the control plane's cache file at start-up: that
    /// counts as the last good answer, and the state is stale (`why` as the error) until the
    /// backend itself answers.
    pub fn restored(&self, written_unix: f64, why: impl fmt::Display) {
        let mut s = self.lock();
        s.last_ok.get_or_insert(written_unix);
        s.failing_since.get_or_insert_with(now_unix);
        s.last_error = Some(why.to_string());
    }

    /// Counts one more watched name until the guard is dropped.
    pub fn watching(&self) -> WatchGuard {
        self.inner.watched.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self.clone())
    }

    /// The current state.
    pub fn state(&self) -> NamerState {
        let s = self.lock();
        match (s.failing_since, s.last_ok) {
            (Some(_), Some(_)) => NamerState::Stale,
            (Some(_), None) => NamerState::Error,
            (None, Some(_)) => NamerState::Ok,
            (None, None) => NamerState::Pending,
        }
    }

    /// A copy of everything, for `/namers.json` and metrics.
    pub fn snapshot(&self) -> NamerSnapshot {
        let state = self.state();
        let s = self.lock();
        NamerSnapshot {
            kind: self.inner.kind,
            backend: self.inner.backend.clone(),
            state,
            failing_since: s.failing_since,
            last_ok: s.last_ok,
            last_error: s.last_error.clone(),
            updates: self.inner.updates.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
            watched: self.inner.watched.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section only assigns fields, so a poisoned lock is still consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for NamerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_answers_and_failures() {
        let s = NamerStatus::new("consul", "http://127.0.0.1:8500");
        assert_eq!(s.state(), NamerState::Pending);
        s.failed("connection refused");
        assert_eq!(s.state(), NamerState::Error);
        s.updated();
        assert_eq!(s.state(), NamerState::Ok);
        s.failed("timed out");
        let snap = s.snapshot();
        assert_eq!(snap.state, NamerState::Stale);
        assert_eq!(snap.last_error.as_deref(), Some("timed out"));
        assert_eq!((snap.updates, snap.errors), (1, 2));
        assert!(snap.failing_since.is_some() && snap.last_ok.is_some());
        let g1 = s.watching();
        let g2 = s.watching();
        assert_eq!(s.snapshot().watched, 2);
        drop(g1);
        drop(g2);
        assert_eq!(s.snapshot().watched, 0);
    }

    #[test]
    fn restored_names_are_stale_until_the_backend_answers() {
        let s = NamerStatus::new("control", "127.0.0.1:4321");
        s.restored(1_000.0, "serving from the cache file");
        let snap = s.snapshot();
        assert_eq!(snap.state, NamerState::Stale);
        assert_eq!(snap.last_ok, Some(1_000.0));
        s.failed("connection refused");
        assert_eq!(s.state(), NamerState::Stale);
        s.updated();
        assert_eq!(s.state(), NamerState::Ok);
    }
}
