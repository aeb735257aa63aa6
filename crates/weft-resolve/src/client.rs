//! [`ControlInterpreter`]: the proxy's side of the resolution service, an interpreter that
//! binds through the control plane (Linkerd 1's `io.l5d.namerd` interpreter).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{watch, Notify};
use weft_naming::{
    publish_if_changed, Backoff, BindState, Binding, DelegateNode, DelegateOutcome, DelegateTree,
    Dtab, Interpreter, NamerStatus, Path, RemoteInterpreter, WatchGuard,
};

use crate::cache::{self, Key};
use crate::convert;
use crate::proto;
use crate::proto::resolver_client::ResolverClient;

/// A TCP connect to a control instance that takes longer than this fails over to the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Cached bindings kept at most (names come from requests, so this is bounded).
const MAX_CACHED: usize = 4096;

/// How a proxy reaches the control plane (the router's `interpreter: {kind: control}`).
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// Control instances as `host:port`, tried in order; at least one. A failing instance
    /// hands over to the next, round-robin.
    pub addresses: Vec<String>,
    /// The namespace whose dtab binds names, e.g. `default`.
    pub namespace: String,
    /// Where the last state of every binding is kept across restarts; `None`: no cache.
    pub cache_file: Option<PathBuf>,
    /// The prefix this interpreter shows under on `/namers.json` and in the `namer` label of
    /// the `weft_namer_*` metrics, e.g. `/$/control/outbound`.
    pub prefix: Path,
    /// Wait before a new round of attempts when every instance failed: doubles from
    /// `backoff_min` up to `backoff_max`, ±25% jitter.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
}

impl ControlSettings {
    /// Settings for `addresses` and `namespace`, no cache file, prefix `/$/control`, and a
    /// backoff of 100ms up to 5s.
    pub fn new(addresses: Vec<String>, namespace: impl Into<String>) -> ControlSettings {
        ControlSettings {
            addresses,
            namespace: namespace.into(),
            cache_file: None,
            prefix: Path::from_labels(["$", "control"]),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Binds names through the control plane's resolution service.
///
/// One gRPC stream per (path, local dtab), shared by every caller that binds it; the stream
/// follows the control instance's answers. When an instance fails, streams move to the next
/// address at once, and after a round where every instance failed, wait a jittered backoff.
/// **While no instance answers, every binding keeps the last state it received** (it never
/// goes back to pending), and the status is stale: routing continues as it was.
///
/// With a cache file, the last state of every binding is written (atomically) when it
/// changes and read back by [`ControlInterpreter::new`]: names bound after a restart start
/// from their cached state (status stale) until control answers.
#[derive(Clone)]
pub struct ControlInterpreter {
    shared: Arc<Shared>,
}

struct Shared {
    settings: ControlSettings,
    status: NamerStatus,
    http: HttpClient,
    /// The index of the address streams use now; moves on at each failure.
    preferred: AtomicUsize,
    /// Streams open (connected) now.
    open: AtomicUsize,
    streams: Mutex<HashMap<Key, Weak<Stream>>>,
    cache: Mutex<HashMap<Key, proto::ResolveUpdate>>,
    dirty: Arc<Notify>,
    housekeeping: Mutex<Option<tokio::task::AbortHandle>>,
}

type HttpClient = hyper_util::client::legacy::Client<HttpConnector, tonic::body::Body>;

/// One shared binding: its state and the task that follows control.
struct Stream {
    key: Key,
    shared: Weak<Shared>,
    state: watch::Receiver<BindState>,
    task: tokio::task::AbortHandle,
    _watching: WatchGuard,
}

// === impl ControlInterpreter ===

impl ControlInterpreter {
    /// An interpreter for `settings`, with its cache file (if any) read. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// `InvalidInput` when `settings.addresses` is empty. A cache file that cannot be read is
    /// not an error: it is logged and ignored.
    pub fn new(settings: ControlSettings) -> io::Result<ControlInterpreter> {
        if settings.addresses.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control interpreter: no control address",
            ));
        }
        let backend = format!(
            "namespace {} at {}",
            settings.namespace,
            settings.addresses.join(", ")
        );
        let status = NamerStatus::new("control", backend);
        let mut cached = HashMap::new();
        if let Some(file) = &settings.cache_file {
            match cache::read(file, &settings.namespace) {
                Ok(Some(loaded)) => {
                    let why = format!(
                        "control not reached since start; serving {} name(s) from cache file {}",
                        loaded.entries.len(),
                        file.display()
                    );
                    tracing::info!(file = %file.display(), names = loaded.entries.len(), "control: cache file read");
                    status.restored(loaded.written_at, why);
                    cached = loaded.entries;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "control: cache file ignored");
                }
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .http2_keep_alive_while_idle(true)
            .build(connector);
        let shared = Arc::new(Shared {
            settings,
            status,
            http,
            preferred: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            streams: Mutex::new(HashMap::new()),
            cache: Mutex::new(cached),
            dirty: Arc::new(Notify::new()),
            housekeeping: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(housekeeping(Arc::downgrade(&shared), shared.dirty.clone()));
            *lock(&shared.housekeeping) = Some(task.abort_handle());
        }
        Ok(ControlInterpreter { shared })
    }

    /// This interpreter as a [`weft_naming::Interpreter`] for routers.
    pub fn interpreter(&self) -> Interpreter {
        Interpreter::remote(Arc::new(self.clone()))
    }

    /// The health of the connection to control: ok, stale (routing on the last state
    /// received, since `failingSince`), error (never reached and no cache), pending.
    pub fn status(&self) -> NamerStatus {
        self.shared.status.clone()
    }

    /// The state of `path` under local dtab `local` in the cache (what a binding would start
    /// from now), if any.
    pub fn cached(&self, path: &Path, local: &Dtab) -> Option<BindState> {
        let cache = lock(&self.shared.cache);
        let update = cache.get(&(path.clone(), local.to_string()))?;
        convert::state(update).ok()
    }
}

impl RemoteInterpreter for ControlInterpreter {
    fn bind(&self, dtab: Dtab, path: Path) -> Binding {
        let key: Key = (path, dtab.to_string());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let (_, rx) = watch::channel(BindState::Failed("binding needs a tokio runtime".into()));
            return Binding::from_watch(rx, Arc::new(()));
        };
        // Lock order: `cache` is never locked while `streams` is held (`apply` takes
        // `streams` inside `cache`).
        let initial = lock(&self.shared.cache)
            .get(&key)
            .and_then(|u| convert::state(u).ok())
            .unwrap_or(BindState::Pending);
        let mut streams = lock(&self.shared.streams);
        if let Some(stream) = streams.get(&key).and_then(Weak::upgrade) {
            drop(streams);
            return Binding::from_watch(stream.state.clone(), stream);
        }
        let (tx, rx) = watch::channel(initial);
        let task = runtime.spawn(follow(self.shared.clone(), key.clone(), tx));
        let stream = Arc::new(Stream {
            key: key.clone(),
            shared: Arc::downgrade(&self.shared),
            state: rx.clone(),
            task: task.abort_handle(),
            _watching: self.shared.status.watching(),
        });
        streams.insert(key, Arc::downgrade(&stream));
        drop(streams);
        Binding::from_watch(rx, stream)
    }

    fn delegate<'a>(
        &'a self,
        dtab: &'a Dtab,
        path: &'a Path,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = DelegateTree> + Send + 'a>> {
        Box::pin(self.shared.delegate(dtab, path, wait))
    }

    fn statuses(&self) -> Vec<(Path, NamerStatus)> {
        vec![(
            self.shared.settings.prefix.clone(),
            self.shared.status.clone(),
        )]
    }
}

// === impl Shared ===

impl Shared {
    fn client(&self, addr: &str) -> Result<ResolverClient<HttpClient>, String> {
        let origin: http::Uri = format!("http://{addr}")
            .parse()
            .map_err(|e| format!("control address {addr:?}: {e}"))?;
        Ok(ResolverClient::with_origin(self.http.clone(), origin))
    }

    /// Streams `key` from the instance at `addr` until the stream fails; returns why, and
    /// whether any update came.
    async fn stream_once(
        &self,
        addr: &str,
        key: &Key,
        tx: &watch::Sender<BindState>,
    ) -> (String, bool) {
        let mut client = match self.client(addr) {
            Ok(c) => c,
            Err(e) => return (e, false),
        };
        let request = proto::ResolveRequest {
            namespace: self.settings.namespace.clone(),
            path: key.0.to_string(),
            local_dtab: key.1.clone(),
        };
        let mut updates = match client.resolve(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => return (describe(&s), false),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        let mut got = false;
        let why = loop {
            match updates.message().await {
                Ok(Some(update)) => {
                    got = true;
                    self.apply(addr, key, tx, update);
                }
                Ok(None) => break "stream ended".to_owned(),
                Err(s) => break describe(&s),
            }
        };
        self.open.fetch_sub(1, Ordering::Relaxed);
        (why, got)
    }

    /// Applies one update from control: a new state is published and cached; "pending"
    /// never replaces a state already known.
    fn apply(
        &self,
        addr: &str,
        key: &Key,
        tx: &watch::Sender<BindState>,
        update: proto::ResolveUpdate,
    ) {
        let state = match convert::state(&update) {
            Ok(s) => s,
            Err(e) => {
                self.status
                    .failed(format!("{addr}: malformed update for {}: {e}", key.0));
                return;
            }
        };
        self.status.updated();
        if matches!(state, BindState::Pending) && !matches!(*tx.borrow(), BindState::Pending) {
            return;
        }
        tracing::debug!(path = %key.0, local = %key.1, version = %update.dtab_version, "control: update");
        if publish_if_changed(tx, state) && self.settings.cache_file.is_some() {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED && !cache.contains_key(key) {
                let streams = lock(&self.streams);
                let idle = cache.keys().find(|k| !streams.contains_key(*k)).cloned();
                drop(streams);
                match idle {
                    Some(k) => {
                        cache.remove(&k);
                    }
                    None => return,
                }
            }
            cache.insert(key.clone(), update);
            drop(cache);
            self.dirty.notify_one();
        }
    }

    async fn delegate(&self, dtab: &Dtab, path: &Path, wait: Duration) -> DelegateTree {
        let request = proto::DelegateRequest {
            namespace: self.settings.namespace.clone(),
            path: path.to_string(),
            local_dtab: dtab.to_string(),
        };
        let n = self.settings.addresses.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..n {
            let addr = &self.settings.addresses[(first + k) % n];
            let mut client = match self.client(addr) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // The control side waits up to its own limit for pending namers.
            let call = client.delegate(request.clone());
            let answer = tokio::time::timeout(wait + crate::DELEGATE_WAIT, call).await;
            let message = match answer {
                Ok(Ok(r)) => match serde_json::from_str::<DelegateTree>(&r.get_ref().json) {
                    Ok(tree) => return tree,
                    Err(e) => format!("{addr}: malformed delegation tree: {e}"),
                },
                // The instance answered: the namespace does not exist, the path is bad.
                Ok(Err(s))
                    if matches!(
                        s.code(),
                        tonic::Code::NotFound | tonic::Code::InvalidArgument
                    ) =>
                {
                    return error_tree(dtab, path, format!("control {addr}: {}", s.message()))
                }
                Ok(Err(s)) => format!("{addr}: {}", describe(&s)),
                Err(_) => format!("{addr}: no answer within {:?}", wait + crate::DELEGATE_WAIT),
            };
            errors.push(message);
        }
        error_tree(
            dtab,
            path,
            format!("no control instance answered: {}", errors.join("; ")),
        )
    }
}

/// Follows `key` on control for as long as the binding lives (the task is aborted when the
/// last [`Binding`] clone goes).
async fn follow(shared: Arc<Shared>, key: Key, tx: watch::Sender<BindState>) {
    let n = shared.settings.addresses.len();
    let mut backoff = Backoff::new(shared.settings.backoff_min, shared.settings.backoff_max);
    let mut failed = 0;
    loop {
        let i = shared.preferred.load(Ordering::Relaxed) % n;
        let addr = &shared.settings.addresses[i];
        let (why, got) = shared.stream_once(addr, &key, &tx).await;
        if got {
            backoff.reset();
            failed = 0;
        }
        tracing::debug!(path = %key.0, %addr, error = %why, "control: stream failed");
        shared.status.failed(format!("{addr}: {why}"));
        // Every stream on this instance fails together: the first to notice moves them all.
        let _ =
            shared
                .preferred
                .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        failed += 1;
        if failed >= n {
            failed = 0;
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

/// Writes the cache file when a binding changed, and tells the status that control is
/// still heard from while streams are open (so "seconds since the last update" stays near 0
/// while control is connected and quiet).
async fn housekeeping(shared: Weak<Shared>, dirty: Arc<Notify>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let write = tokio::select! {
            () = dirty.notified() => true,
            _ = tick.tick() => false,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !write {
            if shared.open.load(Ordering::Relaxed) > 0 {
                shared.status.heard();
            }
            continue;
        }
        let Some(file) = shared.settings.cache_file.clone() else {
            continue;
        };
        let namespace = shared.settings.namespace.clone();
        let entries: Vec<_> = lock(&shared.cache)
            .iter()
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect();
        drop(shared);
        let written = tokio::task::spawn_blocking(move || {
            cache::write(&file, &namespace, &entries).map_err(|e| (file, e))
        })
        .await;
        if let Ok(Err((file, e))) = written {
            tracing::warn!(file = %file.display(), error = %e, "control: cannot write the cache file");
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.housekeeping).take() {
            task.abort();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(shared) = self.shared.upgrade() {
            let mut streams = lock(&shared.streams);
            if streams
                .get(&self.key)
                .is_some_and(|w| w.strong_count() == 0)
            {
                streams.remove(&self.key);
            }
        }
    }
}

/// A delegation tree that says only why there is none.
fn error_tree(dtab: &Dtab, path: &Path, message: String) -> DelegateTree {
    let node = DelegateNode {
        path: Some(path.clone()),
        dentry: None,
        namer: None,
        residual: None,
        weight: None,
        outcome: DelegateOutcome::Error { message },
    };
    DelegateTree {
        path: path.clone(),
        dtab: dtab.clone(),
        result: node.clone(),
        root: node,
    }
}

/// A gRPC status as one line: its message, or its code when the message is empty.
fn describe(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a lookup, insert or remove: a poisoned lock is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
