//! [`ResolveService`]: the control plane's side of the resolution service.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use weft_naming::{BindState, Binding, Dtab, Interpreter, Path};

use crate::convert;
use crate::proto;
use crate::proto::resolver_server::{Resolver, ResolverServer};

/// The most names one proxy connection may watch at once (HTTP/2 concurrent streams).
pub(crate) const MAX_STREAMS_PER_PROXY: u32 = 100_000;

/// How long a `Delegate` call waits for namers that are still loading.
pub const DELEGATE_WAIT: Duration = Duration::from_secs(5);

/// A namespace's dtab and its version (an opaque string such as an etcd revision), or
/// `None` while the namespace does not exist.
pub type NamespaceDtab = Option<(Dtab, String)>;

/// Where the service reads the dtabs of namespaces: the control plane's store.
///
/// The receiver's current value is the namespace's dtab and its version (an opaque string
/// such as an etcd revision), or `None` while the namespace does not exist; every later
/// change is sent on it. Must not block.
pub trait DtabSource: Send + Sync + 'static {
    /// Starts (or joins) watching `namespace`.
    fn watch(&self, namespace: &str) -> watch::Receiver<Option<(Dtab, String)>>;

    /// Resolves once the source knows whether `namespace` exists, e.g. after a store's first
    /// read from its database; until then streams for it send nothing (a proxy keeps what
    /// it has) rather than "does not exist". Default: at once.
    fn loaded(&self, namespace: &str) -> LoadedFuture {
        let _ = namespace;
        Box::pin(std::future::ready(()))
    }
}

/// What [`DtabSource::loaded`] returns.
pub type LoadedFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The resolution service (`weft.resolve.v1.Resolver`): binds the names proxies ask for,
/// under a namespace's dtab followed by the proxy's local dtab, with the control plane's
/// namers, and streams every new state.
///
/// Cloning is cheap and shares the registry and counters.
#[derive(Clone)]
pub struct ResolveService {
    shared: Arc<Shared>,
}

struct Shared {
    source: Arc<dyn DtabSource>,
    interpreter: Interpreter,
    watched: Mutex<HashMap<WatchKey, u64>>,
    /// Live bindings by effective dtab (text) and path, with the number of streams on each:
    /// every proxy watching the same name shares one.
    bindings: Mutex<HashMap<(String, Path), (Binding, usize)>>,
    connections: AtomicU64,
    streams: AtomicU64,
    streams_total: AtomicU64,
    updates_sent: AtomicU64,
    delegations: AtomicU64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct WatchKey {
    namespace: String,
    path: Path,
    local: String,
}

/// One name proxies are routing right now (see [`ResolveService::watched`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedName {
    /// The namespace whose dtab binds it.
    pub namespace: String,
    /// The logical name, e.g. `/svc/books`.
    pub path: Path,
    /// The local dtab proxies append (their router dtab and request overrides); empty for
    /// none.
    pub local_dtab: Dtab,
    /// Open streams watching it: each proxy opens one per name and local dtab, so this is
    /// the number of proxies routing it.
    pub streams: u64,
}

/// The service's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStats {
    /// Proxy connections open now (one HTTP/2 connection per proxy and control instance),
    /// when served by [`ResolveService::serve`].
    pub connections: u64,
    /// Resolve streams open now.
    pub streams: u64,
    /// Live bindings now: streams of the same name and effective dtab (from any number of
    /// proxies) share one.
    pub bindings: u64,
    /// Resolve streams opened since start.
    pub streams_total: u64,
    /// Updates sent on all streams since start.
    pub updates_sent_total: u64,
    /// `Delegate` calls answered since start.
    pub delegations_total: u64,
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<proto::ResolveUpdate, Status>> + Send>>;

// === impl ResolveService ===

impl ResolveService {
    /// A service reading namespace dtabs from `source` and binding with `interpreter` (the
    /// control plane's namers).
    pub fn new(source: Arc<dyn DtabSource>, interpreter: Interpreter) -> ResolveService {
        ResolveService {
            shared: Arc::new(Shared {
                source,
                interpreter,
                watched: Mutex::new(HashMap::new()),
                bindings: Mutex::new(HashMap::new()),
                connections: AtomicU64::new(0),
                streams: AtomicU64::new(0),
                streams_total: AtomicU64::new(0),
                updates_sent: AtomicU64::new(0),
                delegations: AtomicU64::new(0),
            }),
        }
    }

    /// The names proxies watch right now, sorted by namespace, path and local dtab: what
    /// `weft dtab update --dry-run` re-binds under a proposed dtab.
    pub fn watched(&self) -> Vec<WatchedName> {
        let watched = self.shared.lock();
        let mut out: Vec<WatchedName> = watched
            .iter()
            .map(|(k, n)| WatchedName {
                namespace: k.namespace.clone(),
                path: k.path.clone(),
                // Parsed when the stream started: cannot fail.
                local_dtab: Dtab::read(&k.local).unwrap_or_default(),
                streams: *n,
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.namespace, &a.path, a.local_dtab.to_string()).cmp(&(
                &b.namespace,
                &b.path,
                b.local_dtab.to_string(),
            ))
        });
        out
    }

    /// The counters now.
    pub fn stats(&self) -> ServiceStats {
        let s = &self.shared;
        ServiceStats {
            connections: s.connections.load(Ordering::Relaxed),
            streams: s.streams.load(Ordering::Relaxed),
            bindings: lock(&s.bindings).len() as u64,
            streams_total: s.streams_total.load(Ordering::Relaxed),
            updates_sent_total: s.updates_sent.load(Ordering::Relaxed),
            delegations_total: s.delegations.load(Ordering::Relaxed),
        }
    }

    /// The service as a tower service of HTTP requests, for a caller that runs its own
    /// HTTP/2 server (gRPC over h2c or TLS).
    pub fn into_server(self) -> ResolverServer<ResolveService> {
        ResolverServer::new(self)
    }

    /// Serves gRPC over plaintext HTTP/2 (h2c) on `listener` until `shutdown` fires, then
    /// stops accepting and closes every connection at once: resolve streams never end by
    /// themselves, and proxies keep their last state and move to another instance.
    ///
    /// # Errors
    /// None today; accept errors (out of file descriptors) are logged and retried.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        self.serve_admitting(listener, shutdown, |_| Ok(())).await
    }

    /// Like [`ResolveService::serve`], asking `admit` about the peer address of each
    /// connection first: a connection it refuses (`Err(reason)`) is answered on every call
    /// with gRPC `PERMISSION_DENIED` and `reason` as the message, and is not counted in
    /// [`ServiceStats::connections`]. The control plane's `readAccess` is applied this way.
    ///
    /// # Errors
    /// None today; accept errors (out of file descriptors) are logged and retried.
    pub async fn serve_admitting<A>(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        admit: A,
    ) -> io::Result<()>
    where
        A: Fn(SocketAddr) -> Result<(), String> + Send + Sync + 'static,
    {
        let server = self.clone().into_server();
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let (io, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "resolve: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = io.set_nodelay(true);
                    if let Err(reason) = admit(peer) {
                        tracing::debug!(%peer, %reason, "resolve: connection refused");
                        conns.spawn(refuse(io, peer, reason));
                        continue;
                    }
                    let server = server.clone();
                    let guard = Counted::new(self.shared.clone(), |s| &s.connections);
                    conns.spawn(async move {
                        let _guard = guard;
                        let svc = hyper::service::service_fn(move |req| {
                            tower::ServiceExt::oneshot(server.clone(), req)
                        });
                        if let Err(e) = h2_builder().serve_connection(TokioIo::new(io), svc).await {
                            tracing::debug!(%peer, error = %e, "resolve: connection ended");
                        }
                    });
                }
            }
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// The HTTP/2 server settings of every connection.
fn h2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // A proxy opens one stream per name it routes, all on one connection: hyper's default
    // of 200 concurrent streams would leave the 201st name waiting forever.
    h2.max_concurrent_streams(MAX_STREAMS_PER_PROXY)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new());
    h2
}

/// Answers every call on a refused connection with `PERMISSION_DENIED` and `reason`.
async fn refuse(io: tokio::net::TcpStream, peer: SocketAddr, reason: String) {
    let svc = hyper::service::service_fn(move |_req| {
        let status = Status::permission_denied(reason.clone());
        async move { Ok::<_, std::convert::Infallible>(status.into_http::<tonic::body::Body>()) }
    });
    if let Err(e) = h2_builder().serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(%peer, error = %e, "resolve: refused connection ended");
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchKey, u64>> {
        lock(&self.watched)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one insert, update or remove: a poisoned map is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Parses the path and local dtab of a request.
fn parse(path: &str, local: &str) -> Result<(Path, Dtab), Status> {
    let path =
        Path::read(path).map_err(|e| Status::invalid_argument(format!("path {path:?}: {e}")))?;
    let local =
        Dtab::read(local).map_err(|e| Status::invalid_argument(format!("local dtab: {e}")))?;
    Ok((path, local))
}

#[tonic::async_trait]
impl Resolver for ResolveService {
    type ResolveStream = UpdateStream;

    async fn resolve(
        &self,
        request: Request<proto::ResolveRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let req = request.into_inner();
        let (path, local) = parse(&req.path, &req.local_dtab)?;
        tracing::debug!(namespace = %req.namespace, %path, %local, "resolve stream opened");
        let watch = Watch::new(self.shared.clone(), req.namespace, path, local);
        let stream = futures_util::stream::unfold(watch, |mut w| async move {
            let update = w.next().await;
            Some((Ok(update), w))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delegate(
        &self,
        request: Request<proto::DelegateRequest>,
    ) -> Result<Response<proto::DelegateResponse>, Status> {
        let req = request.into_inner();
        let (path, local) = parse(&req.path, &req.local_dtab)?;
        let current = self.shared.source.watch(&req.namespace).borrow().clone();
        let Some((dtab, version)) = current else {
            return Err(Status::not_found(format!(
                "namespace {} does not exist",
                req.namespace
            )));
        };
        let tree = self
            .shared
            .interpreter
            .delegate(&dtab.concat(&local), &path, DELEGATE_WAIT)
            .await;
        self.shared.delegations.fetch_add(1, Ordering::Relaxed);
        let json = serde_json::to_string(&tree)
            .map_err(|e| Status::internal(format!("delegation tree: {e}")))?;
        Ok(Response::new(proto::DelegateResponse {
            json,
            dtab_version: version,
        }))
    }
}

/// One resolve stream: follows the namespace dtab and the binding under it, and yields each
/// new state (identical consecutive states are not repeated).
struct Watch {
    shared: Arc<Shared>,
    namespace: String,
    path: Path,
    local: Dtab,
    dtabs: watch::Receiver<Option<(Dtab, String)>>,
    /// Until the source has loaded the namespace ([`DtabSource::loaded`]).
    loading: Option<LoadedFuture>,
    dtabs_open: bool,
    dtab_changed: bool,
    bound: Option<(SharedBinding, watch::Receiver<BindState>, String)>,
    last: Option<proto::resolve_update::State>,
    _registered: Registered,
    _counted: Counted,
}

impl Watch {
    fn new(shared: Arc<Shared>, namespace: String, path: Path, local: Dtab) -> Watch {
        shared.streams_total.fetch_add(1, Ordering::Relaxed);
        let registered = Registered::new(
            shared.clone(),
            WatchKey {
                namespace: namespace.clone(),
                path: path.clone(),
                local: local.to_string(),
            },
        );
        Watch {
            dtabs: shared.source.watch(&namespace),
            loading: Some(shared.source.loaded(&namespace)),
            _counted: Counted::new(shared.clone(), |s| &s.streams),
            shared,
            namespace,
            path,
            local,
            dtabs_open: true,
            dtab_changed: true,
            bound: None,
            last: None,
            _registered: registered,
        }
    }

    /// The next update to send; waits until there is one.
    async fn next(&mut self) -> proto::ResolveUpdate {
        if let Some(loading) = self.loading.take() {
            loading.await;
        }
        loop {
            if self.dtab_changed {
                self.dtab_changed = false;
                let current = self.dtabs.borrow_and_update().clone();
                self.bound = current.map(|(dtab, version)| {
                    let binding = SharedBinding::new(
                        self.shared.clone(),
                        dtab.concat(&self.local),
                        self.path.clone(),
                    );
                    let rx = binding.binding.state();
                    (binding, rx, version)
                });
            }
            let update = match &mut self.bound {
                None => proto::ResolveUpdate {
                    state: Some(proto::resolve_update::State::Error(format!(
                        "namespace {} does not exist",
                        self.namespace
                    ))),
                    dtab_version: String::new(),
                },
                Some((_, rx, version)) => convert::update(&rx.borrow_and_update(), version),
            };
            // A re-bind under a new dtab starts pending for a moment: the proxy keeps the
            // previous state meanwhile rather than hearing "pending".
            let pending_again =
                matches!(update.state, Some(proto::resolve_update::State::Pending(_)))
                    && self.last.is_some();
            if !pending_again && self.last != update.state {
                self.last = update.state.clone();
                self.shared.updates_sent.fetch_add(1, Ordering::Relaxed);
                return update;
            }
            self.wait().await;
        }
    }

    /// Waits for the namespace dtab or the binding to change.
    async fn wait(&mut self) {
        let binding = async {
            match &mut self.bound {
                Some((_, rx, _)) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let dtabs = async {
            if !self.dtabs_open || self.dtabs.changed().await.is_err() {
                return false;
            }
            true
        };
        tokio::select! {
            () = binding => {}
            changed = dtabs => {
                if changed {
                    self.dtab_changed = true;
                } else if self.dtabs_open {
                    // The store dropped the namespace's sender: no more dtab changes.
                    self.dtabs_open = false;
                }
            }
        }
    }
}

/// One stream's use of a binding shared by every stream of the same name and dtab.
struct SharedBinding {
    shared: Arc<Shared>,
    key: (String, Path),
    binding: Binding,
}

impl SharedBinding {
    fn new(shared: Arc<Shared>, dtab: Dtab, path: Path) -> SharedBinding {
        let key = (dtab.to_string(), path);
        let mut bindings = lock(&shared.bindings);
        let (binding, users) = bindings
            .entry(key.clone())
            .or_insert_with(|| (shared.interpreter.bind(dtab, key.1.clone()), 0));
        *users += 1;
        let binding = binding.clone();
        drop(bindings);
        SharedBinding {
            shared,
            key,
            binding,
        }
    }
}

impl Drop for SharedBinding {
    fn drop(&mut self) {
        let mut bindings = lock(&self.shared.bindings);
        if let Some((_, users)) = bindings.get_mut(&self.key) {
            *users -= 1;
            if *users == 0 {
                bindings.remove(&self.key);
            }
        }
    }
}

/// Counts one watched name in the registry while it lives.
struct Registered {
    shared: Arc<Shared>,
    key: WatchKey,
}

impl Registered {
    fn new(shared: Arc<Shared>, key: WatchKey) -> Registered {
        *shared.lock().entry(key.clone()).or_insert(0) += 1;
        Registered { shared, key }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut watched = self.shared.lock();
        if let Some(n) = watched.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                watched.remove(&self.key);
            }
        }
    }
}

/// Counts one open thing (a connection, a stream) on a gauge while it lives.
struct Counted {
    shared: Arc<Shared>,
    gauge: fn(&Shared) -> &AtomicU64,
}

impl Counted {
    fn new(shared: Arc<Shared>, gauge: fn(&Shared) -> &AtomicU64) -> Counted {
        gauge(&shared).fetch_add(1, Ordering::Relaxed);
        Counted { shared, gauge }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.gauge)(&self.shared).fetch_sub(1, Ordering::Relaxed);
    }
}
