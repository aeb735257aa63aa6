//! A router: identifies each request, binds its logical name through the dtab and namers, picks
//! a bound client by weight and an endpoint by P2C, and forwards (DESIGN.md "Request path").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::retry::budget::TpsBudget;
use weft_config::RouterConfig;
use weft_naming::{
    BindState, Binding, BoundName, BoundTree, DelegateTree, Dtab, Interpreter, Path, Sampled,
};
use weft_telemetry::{Classification, RouterMetrics, ServiceMetrics};

use crate::balance::{Balancer, Pick};
use crate::body::ProxyBody;
use crate::classify::Classifier;
use crate::client::ClientParams;
use crate::error::{ErrorKind, ProxyError};
use crate::forward::{Dispatch, Forwarded};
use crate::headers::{local_dtab, rewrite_request, via_hops, Carried, ORIG_PROTO};
use crate::identify::identify;
use crate::observe::Observed;
use crate::replay::ReplayBody;
use crate::tap::{Tap, TapRequest, Tapped};
use crate::tls::ClientTls;
use crate::upgrade;
use rustls::pki_types::ServerName;
use weft_telemetry::access_log::AccessLog;
use weft_telemetry::trace::Tracer;
use weft_tls::Identity;

/// Bounds on the caches a client can grow with request headers (Host, `l5d-dtab`): past
/// them, per-request-dtab bindings are rebuilt and service metrics share one overflow series.
const MAX_LOCAL_BINDINGS: usize = 1024;
const MAX_SERVICES: usize = 1024;
/// Bindings and clients kept at most; when full, the cache starts over (entries in use stay
/// alive with their requests and are recreated on the next one). Bounds the memory a client
/// can make the proxy spend by sending many distinct Host headers.
const MAX_NAMES: usize = 4096;
const OVERFLOW_SERVICE: &str = "[overflow]";
const UNIDENTIFIED_SERVICE: &str = "[unidentified]";
/// The route label of requests that match no route of a service profile.
const DEFAULT_ROUTE: &str = "[default]";

/// The hasher of the per-request caches below. SipHash was the largest single cost of their
/// four lookups per request; foldhash is several times cheaper and still seeded per process.
/// Keys can come from requests (a Host header becomes a name), so every map is also bounded.
type FastHash = foldhash::fast::RandomState;

/// The metrics handles of one logical service's routes, by route name.
type RouteMetrics = Vec<(Box<str>, ServiceMetrics)>;

/// One configured router (e.g. `outbound`), shared by all of its servers.
pub struct Router {
    config: RouterConfig,
    interpreter: Interpreter,
    metrics: RouterMetrics,
    params: ClientParams,
    /// Bindings under the router's own dtab, by logical name.
    bindings: RwLock<HashMap<Path, Binding, FastHash>>,
    /// Bindings under a dtab extended by request headers, by (local dtab text, name).
    local_bindings: Mutex<HashMap<(String, Path), Binding, FastHash>>,
    /// Bound clients (balancers), by bound id.
    clients: RwLock<HashMap<Path, Arc<Balancer>, FastHash>>,
    /// Metrics handles by logical name, then route (few per name: the profile's routes and
    /// `[default]`). Two levels, so a lookup borrows the route name instead of allocating a key.
    services: RwLock<HashMap<Path, RouteMetrics, FastHash>>,
    /// Retry budgets by logical name.
    budgets: RwLock<HashMap<Path, Arc<TpsBudget>, FastHash>>,
    tap: Arc<Tap>,
    /// The proxy's mTLS identity, if configured.
    identity: Option<Identity>,
    /// TLS to servers outside the mesh (`client.tls` without `serverIdentity`), loaded when
    /// the proxy starts.
    origination: Option<weft_tls::Origination>,
    tracer: Tracer,
    access_log: Option<AccessLog>,
}

/// What the response side needs to know of a request.
struct RequestCtx {
    peer: SocketAddr,
    /// The client's SPIFFE ID, when it came over mesh TLS.
    client_id: Option<Arc<str>>,
    /// Trace span and access log, when enabled.
    observed: Option<Observed>,
    service: Option<ServiceMetrics>,
    tap: Option<Tapped>,
}

/// The request's authority as the client sent it: `:authority`, else Host.
fn authority<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
        .unwrap_or("")
}

/// What a matched route decides for one request.
struct RouteParams<'a> {
    name: &'a str,
    /// Client identities allowed on this route, if it restricts them.
    authorized: Option<&'a [String]>,
    timeout: Option<Duration>,
    classifier: Classifier,
}

// === impl Router ===

impl Router {
    pub(crate) fn new(
        config: RouterConfig,
        interpreter: Interpreter,
        metrics: RouterMetrics,
        tap: Arc<Tap>,
        identity: Option<Identity>,
        tracer: Tracer,
        access_log: Option<AccessLog>,
    ) -> Router {
        let params = ClientParams {
            connect_timeout: config.client.connect_timeout,
            pool_idle_timeout: config.client.pool_idle_timeout,
        };
        Router {
            config,
            interpreter,
            metrics,
            params,
            bindings: RwLock::default(),
            local_bindings: Mutex::default(),
            clients: RwLock::default(),
            services: RwLock::default(),
            budgets: RwLock::default(),
            tap,
            identity,
            origination: None,
            tracer,
            access_log,
        }
    }

    /// Sets the TLS configs for servers outside the mesh, which `client.tls` without
    /// `serverIdentity` asks for (without them, such a router's clients send plaintext).
    pub(crate) fn set_origination(&mut self, origination: weft_tls::Origination) {
        self.origination = Some(origination);
    }

    /// The router's label (`label` in the config).
    pub fn label(&self) -> &str {
        &self.config.label
    }

    /// The router's validated configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &RouterMetrics {
        &self.metrics
    }

    /// The identity that terminates mesh TLS on this router's servers: set when the router
    /// has a `tls` section (validation guarantees an identity exists then).
    pub(crate) fn server_identity(&self) -> Option<&Identity> {
        self.config.tls.as_ref().and(self.identity.as_ref())
    }

    /// Whether a client with this identity (`None`: plaintext) may use the router.
    pub(crate) fn authorizes(&self, client: Option<&str>) -> bool {
        self.config
            .tls
            .as_ref()
            .is_none_or(|t| t.authorizes(client))
    }

    /// Explains how `path` binds under the router's dtab extended by `local` (as an
    /// `l5d-dtab` header would), waiting at most the binding timeout for namers.
    pub async fn delegate(&self, path: &Path, local: &Dtab) -> DelegateTree {
        let dtab = self.config.dtab.concat(local);
        self.interpreter
            .delegate(&dtab, path, self.config.binding_timeout)
            .await
    }

    /// Handles one request end to end; never fails: proxy errors become responses carrying
    /// `l5d-proxy-error`.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        client_id: Option<Arc<str>>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let observed = Observed::start(
            &self.tracer,
            self.access_log.as_ref(),
            self.label(),
            peer,
            &req,
            authority(&req),
        );
        let mut ctx = RequestCtx {
            peer,
            client_id,
            service: None,
            tap: None,
            observed,
        };
        // Boxed: hyper moves the service future into place once per request, and forward's
        // state (binding, balancer pick, attempts) is most of its size.
        let result = Box::pin(self.forward(req, &mut ctx)).await;
        let service = ctx
            .service
            .unwrap_or_else(|| self.service_metrics(None, DEFAULT_ROUTE));
        service.latency(start.elapsed().as_secs_f64());
        match result {
            Ok(forwarded) => forwarded.into_response(service, ctx.tap, ctx.observed),
            Err(err) => {
                tracing::debug!(router = %self.label(), error = %err, "proxy error");
                let rsp: Response<ProxyBody> = err.to_response();
                let (status, reason) = (rsp.status().as_u16(), err.kind().reason());
                service.response(status, Classification::failure, reason);
                let len = http_body::Body::size_hint(rsp.body()).exact().unwrap_or(0);
                if let Some(tap) = ctx.tap {
                    tap.response(None, status, Some(reason));
                    tap.end(status, Instant::now(), len, None, None);
                }
                if let Some(observed) = ctx.observed {
                    observed.finish(status, None, Some(reason), len);
                }
                rsp
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: &mut RequestCtx,
    ) -> Result<Forwarded, ProxyError> {
        let carried = Carried::scan(req.headers());
        if carried.via && via_hops(req.headers()) > self.config.max_hops as usize {
            return Err(ProxyError::new(
                ErrorKind::LoopDetected,
                format!("more than {} proxies in Via", self.config.max_hops),
            ));
        }
        if !self.authorizes(ctx.client_id.as_deref()) {
            let who = ctx.client_id.as_deref().unwrap_or("a plaintext client");
            return Err(ProxyError::new(
                ErrorKind::Unauthorized,
                format!("{who} may not call router {}", self.label()),
            ));
        }
        let id = identify(&self.config.identifier, &self.config.dst_prefix, &req)?;
        let route = self.route(&id.name, req.method(), req.uri().path());
        let svc = ctx
            .service
            .insert(self.service_metrics(Some(&id.name), route.name));
        svc.request();
        if let Some(observed) = ctx.observed.as_mut() {
            observed.identified(&id.name.to_string(), route.name);
        }
        if let Some(allowed) = route.authorized {
            let client = ctx.client_id.as_deref();
            let ok = client.is_some_and(|id| {
                allowed.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => id.starts_with(prefix),
                    None => id == p,
                })
            });
            if !ok {
                let who = client.unwrap_or("a plaintext client");
                return Err(ProxyError::new(
                    ErrorKind::Unauthorized,
                    format!("{who} may not use route {}", route.name),
                ));
            }
        }
        if self.tap.is_active() {
            ctx.tap = self.tap.matching(&TapRequest {
                router: self.label(),
                src: ctx.peer,
                tls: ctx.client_id.is_some(),
                method: req.method().as_str(),
                authority: authority(&req),
                path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                service: &id.name.to_string(),
                route: route.name,
            });
        }
        let local = local_dtab(req.headers(), carried)?;
        if upgrade::is_upgrade(&req, carried) {
            // Boxed: the upgrade path's state is large and rare; inline, every request's future
            // would carry it (and hyper moves that future once per request).
            return Box::pin(self.forward_upgrade(
                req,
                &local,
                &id.name,
                id.rewritten,
                route.classifier,
                carried,
            ))
            .await;
        }
        let (mut parts, body) = req.into_parts();
        // A request that a peer proxy carried over HTTP/2 goes on as the HTTP/1 it was.
        if carried.orig_proto && parts.headers.remove(&ORIG_PROTO).is_some() {
            parts.version = Version::HTTP_11;
        }
        let (uri, mut headers) = rewrite_request(
            &parts.uri,
            parts.headers,
            parts.version,
            &local,
            id.rewritten,
            carried,
        )?;
        if let Some(observed) = &ctx.observed {
            observed.inject(&mut headers);
        }
        let service_cfg = &self.config.service;
        let budget = self.retry_budget(&id.name);
        let dispatch = Dispatch {
            method: parts.method,
            uri,
            version: parts.version,
            headers,
            body: ReplayBody::new(body, service_cfg.retries.buffer_bytes),
            classifier: route.classifier,
            service: svc,
            budget: &budget,
            backoff: service_cfg.retries.backoff,
            attempt_timeout: service_cfg.attempt_timeout,
            fail_fast: self.config.client.fail_fast_timeout,
        };
        // Boxed once here: awaited directly and under `timeout`, the unboxed future would
        // be laid out twice in this one, and moved with it.
        let run = Box::pin(dispatch.run(self, &local, &id.name));
        match route.timeout.or(service_cfg.total_timeout) {
            Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                ProxyError::new(
                    ErrorKind::RequestTimeout,
                    format!("no response within {limit:?}"),
                )
            })?,
            None => run.await,
        }
    }

    /// Forwards an HTTP/1.1 Upgrade or CONNECT request on a connection of its own.
    async fn forward_upgrade(
        &self,
        req: Request<Incoming>,
        local: &Dtab,
        name: &Path,
        rewritten: Option<http::uri::PathAndQuery>,
        classifier: Classifier,
        carried: Carried,
    ) -> Result<Forwarded, ProxyError> {
        let protocol = req.headers().get(http::header::UPGRADE).cloned();
        let (uri, headers) = rewrite_request(
            req.uri(),
            req.headers().clone(),
            req.version(),
            local,
            rewritten,
            carried,
        )?;
        let balancer = self.bound_client(local, name).await?;
        let Pick::Endpoint(endpoint) = balancer.pick(&[]) else {
            return Err(ProxyError::new(
                ErrorKind::NoEndpoints,
                format!("{name} has no available endpoints"),
            ));
        };
        let head = (req.method().clone(), uri, headers);
        let counters = [
            self.metrics.tcp_bytes("to_upstream"),
            self.metrics.tcp_bytes("to_downstream"),
        ];
        let result = upgrade::forward(
            req,
            head,
            protocol,
            endpoint.addr,
            self.config.client.connect_timeout,
            self.config.tcp_idle_timeout,
            counters,
        )
        .await;
        match result {
            Ok(rsp) => Ok(Forwarded::upgraded(rsp, classifier, balancer, endpoint)),
            Err(err) => {
                balancer.record(&endpoint, false);
                Err(err)
            }
        }
    }

    /// The route of a request: the first matching route of the service's profile, else the
    /// service defaults under the route name `[default]`.
    fn route(&self, name: &Path, method: &Method, path: &str) -> RouteParams<'_> {
        let service = &self.config.service;
        let matched = service
            .profile_for(name)
            .and_then(|p| p.routes.iter().find(|r| r.matcher.matches(method, path)));
        match matched {
            Some(r) => RouteParams {
                name: &r.name,
                authorized: r.authorized_clients.as_deref(),
                timeout: r.timeout,
                classifier: Classifier {
                    classifier: r
                        .response_classifier
                        .clone()
                        .unwrap_or_else(|| service.response_classifier.clone()),
                    route_retryable: r.is_retryable,
                },
            },
            None => RouteParams {
                name: DEFAULT_ROUTE,
                authorized: None,
                timeout: None,
                classifier: Classifier {
                    classifier: service.response_classifier.clone(),
                    route_retryable: false,
                },
            },
        }
    }

    /// The client (balancer) for one attempt: binds `name` and draws a weighted branch.
    pub(crate) async fn bound_client(
        &self,
        local: &Dtab,
        name: &Path,
    ) -> Result<Arc<Balancer>, ProxyError> {
        let bound = self.bind(local, name).await?;
        Ok(self.client(&bound))
    }

    /// Binds `name` under the router dtab plus `local`, waiting for pending namers up to the
    /// binding timeout, and draws one bound name by weight.
    async fn bind(&self, local: &Dtab, name: &Path) -> Result<BoundName, ProxyError> {
        let binding = self.binding(local, name);
        let mut state = binding.state();
        // Almost always bound already: wait (under a timer, which reads the clock) only for
        // a binding still pending.
        if matches!(*state.borrow(), BindState::Pending) {
            tokio::time::timeout(
                self.config.binding_timeout,
                state.wait_for(|s| !matches!(s, BindState::Pending)),
            )
            .await
            .map_err(|_| {
                ProxyError::new(ErrorKind::BindingTimeout, format!("{name} still pending"))
            })?
            .map_err(|_| ProxyError::new(ErrorKind::BindingFailed, "binding stopped"))?;
        }
        let tree: Arc<BoundTree> = match &*state.borrow() {
            BindState::Bound(tree) => tree.clone(),
            BindState::Failed(why) => {
                return Err(ProxyError::new(
                    ErrorKind::BindingFailed,
                    format!("{name}: {why}"),
                ))
            }
            BindState::Pending => {
                return Err(ProxyError::new(ErrorKind::BindingTimeout, name.to_string()))
            }
        };
        let picked = match tree.sample(fastrand::f64) {
            Sampled::Bound(bound) => Ok(bound.clone()),
            Sampled::Neg => Err(ErrorKind::NoSuchService),
            Sampled::Fail => Err(ErrorKind::BindingFailed),
            Sampled::Empty => Err(ErrorKind::NoEndpoints),
        };
        picked.map_err(|kind| ProxyError::new(kind, name.to_string()))
    }

    fn binding(&self, local: &Dtab, name: &Path) -> Binding {
        if local.is_empty() {
            if let Some(b) = read(&self.bindings).get(name) {
                return b.clone();
            }
            let mut map = self
                .bindings
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if map.len() >= MAX_NAMES {
                map.clear();
            }
            return map
                .entry(name.clone())
                .or_insert_with(|| {
                    self.interpreter
                        .bind(self.config.dtab.clone(), name.clone())
                })
                .clone();
        }
        let key = (local.to_string(), name.clone());
        let mut map = self
            .local_bindings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(&key) {
            return b.clone();
        }
        if map.len() >= MAX_LOCAL_BINDINGS {
            map.clear();
        }
        let binding = self
            .interpreter
            .bind(self.config.dtab.concat(local), name.clone());
        map.insert(key, binding.clone());
        binding
    }

    /// The balancer of a bound name, created on first use and kept in step with discovery.
    fn client(&self, bound: &BoundName) -> Arc<Balancer> {
        let existing = read(&self.clients).get(&bound.id).cloned();
        let balancer = existing.unwrap_or_else(|| {
            let mut map = self.clients.write().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= MAX_NAMES {
                map.clear();
            }
            map.entry(bound.id.clone())
                .or_insert_with(|| {
                    Arc::new(Balancer::new(
                        self.params,
                        &self.config.client,
                        self.metrics.client(&bound.id.to_string()),
                        is_meshed(&bound.id),
                        self.client_tls(&bound.id),
                    ))
                })
                .clone()
        });
        balancer.update(&bound.addrs);
        balancer
    }

    fn service_metrics(&self, name: Option<&Path>, route: &str) -> ServiceMetrics {
        let Some(name) = name else {
            return self.metrics.service(UNIDENTIFIED_SERVICE, route);
        };
        let find = |routes: &[(Box<str>, ServiceMetrics)]| {
            routes
                .iter()
                .find(|(r, _)| &**r == route)
                .map(|(_, m)| m.clone())
        };
        if let Some(m) = read(&self.services).get(name).and_then(|r| find(r)) {
            return m;
        }
        let mut map = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SERVICES && !map.contains_key(name) {
            return self.metrics.service(OVERFLOW_SERVICE, route);
        }
        let routes = map.entry(name.clone()).or_default();
        if let Some(m) = find(routes) {
            return m;
        }
        let metrics = self.metrics.service(&name.to_string(), route);
        routes.push((route.into(), metrics.clone()));
        metrics
    }

    /// The retry budget of a logical service, shared by all its requests.
    fn retry_budget(&self, name: &Path) -> Arc<TpsBudget> {
        if let Some(b) = read(&self.budgets).get(name) {
            return b.clone();
        }
        let mut map = self.budgets.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SERVICES {
            map.clear();
        }
        let cfg = &self.config.service.retries.budget;
        map.entry(name.clone())
            .or_insert_with(|| {
                Arc::new(TpsBudget::new(
                    cfg.ttl,
                    cfg.min_retries_per_sec,
                    cfg.percent_can_retry as f32,
                ))
            })
            .clone()
    }
}

impl Router {
    /// TLS for a bound client: mesh TLS when its endpoints are peer proxies and `client.tls`
    /// names the identity they must present; TLS to servers outside the mesh for every bound
    /// client when `client.tls` has no `serverIdentity`.
    fn client_tls(&self, id: &Path) -> Option<ClientTls> {
        match self.config.client.tls.as_ref()? {
            weft_config::ClientTlsConfig::Mesh {
                server_identity: expected,
            } => {
                let identity = self.identity.as_ref()?;
                if !is_meshed(id) {
                    return None;
                }
                let tls = ClientTls::mesh(identity, expected);
                if tls.is_none() {
                    tracing::warn!(%expected, "cannot derive a TLS server name from the expected identity; sending plaintext");
                }
                tls
            }
            weft_config::ClientTlsConfig::Origin { server_name, .. } => {
                let origination = self.origination.as_ref()?;
                let name = server_name.clone().or_else(|| inet_host(id));
                let server_name = name.and_then(|n| match ServerName::try_from(n.clone()) {
                    Ok(sn) => Some(sn),
                    Err(_) => {
                        tracing::warn!(name = %n, client = %id, "not a TLS server name; checking certificates against endpoint addresses");
                        None
                    }
                });
                Some(ClientTls::origin(origination, server_name))
            }
        }
    }
}

/// The host of a bound name `/$/inet/<host>/<port>`: the default TLS server name.
fn inet_host(id: &Path) -> Option<String> {
    let mut labels = id.labels();
    if !labels
        .by_ref()
        .take(2)
        .eq([b"$".as_slice(), b"inet".as_slice()])
    {
        return None;
    }
    let host = std::str::from_utf8(labels.next()?).ok()?;
    Some(host.to_ascii_lowercase())
}

/// Endpoints reached through the `port` transformer are peer weft proxies (linker-to-linker):
/// HTTP/1 requests to them travel over one multiplexed HTTP/2 connection.
fn is_meshed(id: &Path) -> bool {
    id.labels()
        .take(2)
        .eq([b"%".as_slice(), b"port".as_slice()])
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}
