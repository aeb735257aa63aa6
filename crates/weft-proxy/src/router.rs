//! A router: identifies each request, binds its logical name through the dtab and namers, picks
//! a bound client by weight and an endpoint by P2C, and forwards (DESIGN.md "Request path").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::header::{HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_config::RouterConfig;
use weft_naming::{BindState, Binding, BoundName, BoundTree, DelegateTree, Dtab, Interpreter, Path, Sampled};
use weft_telemetry::{Classification, RouterMetrics, ServiceMetrics};

use crate::balance::Balancer;
use crate::body::ProxyBody;
use crate::client::{classify_client_error, ClientParams};
use crate::error::{ErrorKind, ProxyError};
use crate::headers::{append_via, strip_hop_by_hop, via_hops};
use crate::identify::identify;

/// Per-request dtab headers (naming.md "Which dtab applies").
const L5D_DTAB: &str = "l5d-dtab";
const L5D_CTX_DTAB: &str = "l5d-ctx-dtab";
/// Bounds on the caches a client can grow with request headers (Host, `l5d-dtab`): past
/// them, per-request-dtab bindings are rebuilt and service metrics share one overflow series.
const MAX_LOCAL_BINDINGS: usize = 1024;
const MAX_SERVICES: usize = 1024;
const OVERFLOW_SERVICE: &str = "[overflow]";
const UNIDENTIFIED_SERVICE: &str = "[unidentified]";

/// One configured router (e.g. `outbound`), shared by all of its servers.
pub struct Router {
    config: RouterConfig,
    interpreter: Interpreter,
    metrics: RouterMetrics,
    params: ClientParams,
    /// Bindings under the router's own dtab, by logical name.
    bindings: RwLock<HashMap<Path, Binding>>,
    /// Bindings under a dtab extended by request headers, by (local dtab text, name).
    local_bindings: Mutex<HashMap<(String, Path), Binding>>,
    /// Bound clients (balancers), by bound id.
    clients: RwLock<HashMap<Path, Arc<Balancer>>>,
    services: RwLock<HashMap<Path, ServiceMetrics>>,
}

// === impl Router ===

impl Router {
    pub(crate) fn new(config: RouterConfig, interpreter: Interpreter, metrics: RouterMetrics) -> Router {
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
        }
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
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let mut service = None;
        let result = self.forward(req, &mut service).await;
        let service = service.unwrap_or_else(|| self.service_metrics(None));
        let latency = start.elapsed().as_secs_f64();
        match result {
            Ok(rsp) => {
                let status = rsp.status();
                service.response(status.as_u16(), self.classify(status), "", latency);
                rsp.map(ProxyBody::upstream)
            }
            Err(err) => {
                tracing::debug!(router = %self.label(), error = %err, "proxy error");
                let rsp: Response<ProxyBody> = err.to_response();
                let reason = err.kind().reason();
                service.response(rsp.status().as_u16(), Classification::failure, reason, latency);
                rsp
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        service: &mut Option<ServiceMetrics>,
    ) -> Result<Response<Incoming>, ProxyError> {
        if via_hops(req.headers()) > self.config.max_hops as usize {
            return Err(ProxyError::new(
                ErrorKind::LoopDetected,
                format!("more than {} proxies in Via", self.config.max_hops),
            ));
        }
        let id = identify(&self.config.identifier, &self.config.dst_prefix, &req)?;
        let svc = service.insert(self.service_metrics(Some(&id.name)));
        svc.request();
        let local = local_dtab(req.headers())?;
        let bound = self.bind(&local, &id.name).await?;
        let balancer = self.client(&bound);
        let endpoint = balancer.pick().ok_or_else(|| {
            ProxyError::new(ErrorKind::NoEndpoints, format!("{} has no endpoints", bound.id))
        })?;
        let req = rewrite_request(req, &local, id.rewritten, endpoint.addr)?;
        let call = endpoint.call(req);
        let rsp = match self.config.service.total_timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| {
                ProxyError::new(ErrorKind::RequestTimeout, format!("no response within {limit:?}"))
            })?,
            None => call.await,
        }
        .map_err(|e| classify_client_error(e, endpoint.addr))?;
        Ok(rewrite_response(rsp))
    }

    /// Binds `name` under the router dtab plus `local`, waiting for pending namers up to the
    /// binding timeout, and draws one bound name by weight.
    async fn bind(&self, local: &Dtab, name: &Path) -> Result<BoundName, ProxyError> {
        let binding = self.binding(local, name);
        let mut state = binding.state();
        let tree: Arc<BoundTree> = {
            let ready = tokio::time::timeout(
                self.config.binding_timeout,
                state.wait_for(|s| !matches!(s, BindState::Pending)),
            )
            .await
            .map_err(|_| {
                ProxyError::new(ErrorKind::BindingTimeout, format!("{name} still pending"))
            })?
            .map_err(|_| ProxyError::new(ErrorKind::BindingFailed, "binding stopped"))?;
            match &*ready {
                BindState::Bound(tree) => tree.clone(),
                BindState::Failed(why) => {
                    return Err(ProxyError::new(ErrorKind::BindingFailed, format!("{name}: {why}")))
                }
                BindState::Pending => {
                    return Err(ProxyError::new(ErrorKind::BindingTimeout, name.to_string()))
                }
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
            let mut map = self.bindings.write().unwrap_or_else(PoisonError::into_inner);
            return map
                .entry(name.clone())
                .or_insert_with(|| self.interpreter.bind(self.config.dtab.clone(), name.clone()))
                .clone();
        }
        let key = (local.to_string(), name.clone());
        let mut map = self.local_bindings.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(&key) {
            return b.clone();
        }
        if map.len() >= MAX_LOCAL_BINDINGS {
            map.clear();
        }
        let binding = self.interpreter.bind(self.config.dtab.concat(local), name.clone());
        map.insert(key, binding.clone());
        binding
    }

    /// The balancer of a bound name, created on first use and kept in step with discovery.
    fn client(&self, bound: &BoundName) -> Arc<Balancer> {
        let existing = read(&self.clients).get(&bound.id).cloned();
        let balancer = existing.unwrap_or_else(|| {
            let mut map = self.clients.write().unwrap_or_else(PoisonError::into_inner);
            map.entry(bound.id.clone())
                .or_insert_with(|| {
                    Arc::new(Balancer::new(
                        self.params,
                        self.config.client.load_balancer.decay,
                        self.metrics.client(&bound.id.to_string()),
                    ))
                })
                .clone()
        });
        balancer.update(&bound.addrs);
        balancer
    }

    fn service_metrics(&self, name: Option<&Path>) -> ServiceMetrics {
        let Some(name) = name else {
            return self.metrics.service(UNIDENTIFIED_SERVICE);
        };
        if let Some(m) = read(&self.services).get(name) {
            return m.clone();
        }
        let mut map = self.services.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SERVICES {
            return self.metrics.service(OVERFLOW_SERVICE);
        }
        map.entry(name.clone())
            .or_insert_with(|| self.metrics.service(&name.to_string()))
            .clone()
    }

    fn classify(&self, status: http::StatusCode) -> Classification {
        use weft_config::ResponseClassifier;
        match self.config.service.response_classifier {
            ResponseClassifier::AllSuccessful => Classification::success,
            _ if status.is_server_error() => Classification::failure,
            _ => Classification::success,
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// The local dtab of a request: `l5d-ctx-dtab` then `l5d-dtab`, so the user's header wins.
fn local_dtab(headers: &HeaderMap) -> Result<Dtab, ProxyError> {
    let mut local = Dtab::empty();
    for name in [L5D_CTX_DTAB, L5D_DTAB] {
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| {
                ProxyError::new(ErrorKind::BadDtabHeader, format!("{name} is not text"))
            })?;
            let dtab = Dtab::read(text)
                .map_err(|e| ProxyError::new(ErrorKind::BadDtabHeader, format!("{name}: {e}")))?;
            local = local.concat(&dtab);
        }
    }
    Ok(local)
}

/// Prepares a request for the upstream: hop-by-hop headers out, `Via` in, the local dtab
/// forwarded as `l5d-ctx-dtab`, and an absolute URI that keeps the client's authority.
fn rewrite_request(
    req: Request<Incoming>,
    local: &Dtab,
    rewritten: Option<PathAndQuery>,
    endpoint: std::net::SocketAddr,
) -> Result<Request<Incoming>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    append_via(&mut parts.headers, parts.version);
    parts.headers.remove(L5D_DTAB);
    if local.is_empty() {
        parts.headers.remove(L5D_CTX_DTAB);
    } else {
        let value = HeaderValue::try_from(local.to_string()).map_err(|_| {
            ProxyError::new(ErrorKind::BadDtabHeader, "dtab cannot be sent as a header")
        })?;
        parts.headers.insert(L5D_CTX_DTAB, value);
    }
    let authority = parts
        .uri
        .authority()
        .cloned()
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            Authority::try_from(host.as_bytes()).ok()
        })
        .map_or_else(|| Authority::try_from(endpoint.to_string()), Ok)
        .map_err(|e| ProxyError::new(ErrorKind::Unidentified, format!("bad authority: {e}")))?;
    let path = rewritten
        .or_else(|| parts.uri.path_and_query().cloned())
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| ProxyError::new(ErrorKind::Unidentified, format!("bad target: {e}")))?;
    Ok(Request::from_parts(parts, body))
}

fn rewrite_response(rsp: Response<Incoming>) -> Response<Incoming> {
    let (mut parts, body) = rsp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    append_via(&mut parts.headers, parts.version);
    Response::from_parts(parts, body)
}
