//! A router: the request pipeline (DESIGN.md "Request path"). It identifies each request,
//! checks loops and authorization, finds its route, and hands it to the dispatcher (or, for
//! upgrades, to the opaque path); the per-name state those need lives in [`Clients`], the
//! sending in `dispatch`, the endpoints in `endpoint`.

mod identify;
mod route;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use weft_config::RouterConfig;
use weft_naming::{DelegateTree, Dtab, Interpreter, Path};
use weft_telemetry::access_log::AccessLog;
use weft_telemetry::tap::{Tap, TapRequest};
use weft_telemetry::trace::Tracer;
use weft_telemetry::RouterMetrics;
use weft_tls::{Identity, Origination};

use crate::clients::Clients;
use crate::clients::DEFAULT_ROUTE;
use crate::dispatch::{Dispatch, Exchange, Forwarded, Head, ProxyBody};
use crate::endpoint::ReplayBody;
use crate::error::{ErrorKind, ProxyError};
use crate::headers::case::{CaseMaps, Spelled, ORIG_HEADER_CASE};
use crate::headers::{
    clear_context, hop_count, local_dtab, rewrite_request, via_hops, Carried, ORIG_PROTO,
};
use crate::opaque;
use identify::identify;

/// One configured router (e.g. `outbound`), shared by all of its servers.
pub struct Router {
    config: RouterConfig,
    clients: Clients,
    metrics: RouterMetrics,
    tap: Arc<Tap>,
    /// The proxy's mTLS identity, if configured.
    identity: Option<Identity>,
    tracer: Tracer,
    access_log: Option<AccessLog>,
    /// Header spellings carried by peer proxies, as hyper's request extensions.
    case_maps: CaseMaps,
    /// Requests may cross to peer proxies (a namer has a `port` transformer).
    reaches_peers: bool,
}

/// Who sent a request: the connection's peer, its SPIFFE ID when it came over mesh TLS, and
/// whether its listener clears `l5d-*` context (`clearContext`).
#[derive(Clone, Debug)]
pub(crate) struct Downstream {
    pub(crate) addr: SocketAddr,
    pub(crate) id: Option<Arc<str>>,
    pub(crate) clear_context: bool,
    /// Where upgraded tunnels of this connection run, so a drain waits for them.
    pub(crate) tunnels: opaque::Tunnels,
}

/// What a router is built from besides its configuration.
pub(crate) struct Parts {
    pub(crate) interpreter: Interpreter,
    pub(crate) metrics: RouterMetrics,
    pub(crate) tap: Arc<Tap>,
    pub(crate) identity: Option<Identity>,
    /// TLS to servers outside the mesh, when `client.tls` asks for it.
    pub(crate) origination: Option<Origination>,
    pub(crate) tracer: Tracer,
    pub(crate) access_log: Option<AccessLog>,
    /// Every address this process listens on.
    pub(crate) own: Arc<[SocketAddr]>,
    /// Requests may cross to peer proxies (a namer has a `port` transformer).
    pub(crate) reaches_peers: bool,
}

/// The request's authority as the client sent it: `:authority`, else Host.
fn authority<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
        .unwrap_or("")
}

// === impl Router ===

impl Router {
    pub(crate) fn new(config: RouterConfig, parts: Parts) -> Router {
        let clients = Clients::new(
            &config,
            parts.interpreter,
            parts.metrics.clone(),
            parts.identity.clone(),
            parts.origination,
            parts.own,
        );
        Router {
            config,
            clients,
            metrics: parts.metrics,
            tap: parts.tap,
            identity: parts.identity,
            tracer: parts.tracer,
            access_log: parts.access_log,
            case_maps: CaseMaps::new(),
            reaches_peers: parts.reaches_peers,
        }
    }

    /// This router, carrying on from `previous`, the router it replaces on a reload (see
    /// `Clients::carrying_on`; `balancers`: keep the bound clients and their connections).
    pub(crate) fn carrying_on(mut self, previous: &Router, balancers: bool) -> Router {
        self.clients = self.clients.carrying_on(&previous.clients, balancers);
        self
    }

    /// The router's access log, if configured (a reload that keeps its settings reuses it).
    pub(crate) fn access_log(&self) -> Option<&AccessLog> {
        self.access_log.as_ref()
    }

    /// True when the router's requests may cross to peer proxies over HTTP/2: its HTTP/1.1
    /// servers then keep each request head, for its header spelling (`headers::case`).
    pub(crate) fn reaches_peers(&self) -> bool {
        self.reaches_peers
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

    pub(crate) fn clients(&self) -> &Clients {
        &self.clients
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
        self.clients.delegate(path, local).await
    }

    /// What the balancer of the bound client `id` (e.g. `/#/fs/books`) knows now: each
    /// endpoint's peak-EWMA estimate, requests in flight and failure accrual state, and the
    /// TLS towards them. `None` until a request has built that client.
    pub fn client_state(&self, id: &Path) -> Option<crate::ClientState> {
        self.clients.client_state(id)
    }

    /// Explains how `path` would bind under `base` in place of the router's dtab, extended by
    /// `local`, with the router's namers: for trying an edited dtab. Nothing is applied: the
    /// router keeps its dtab and no binding is cached.
    pub async fn delegate_under(&self, base: &Dtab, path: &Path, local: &Dtab) -> DelegateTree {
        self.clients.delegate_under(&base.concat(local), path).await
    }

    /// Handles one request end to end; never fails: proxy errors become responses carrying
    /// `l5d-proxy-error`.
    pub(crate) async fn handle(
        &self,
        mut req: Request<Incoming>,
        from: &Downstream,
    ) -> Response<ProxyBody> {
        let mut carried = Carried::scan(req.headers());
        if from.clear_context {
            carried = clear_context(req.headers_mut(), carried);
        }
        let mut exchange = Exchange::start(
            &self.tracer,
            self.access_log.as_ref(),
            self.label(),
            from.addr,
            &req,
            authority(&req),
        );
        // Boxed: hyper moves the service future into place once per request, and forward's
        // state (binding, balancer pick, attempts) is most of its size.
        let result = Box::pin(self.forward(req, carried, from, &mut exchange)).await;
        match result {
            Ok(forwarded) => forwarded.into_response(exchange, self.config.via),
            Err(err) => {
                if !exchange.is_identified() {
                    let service = self.clients.unidentified();
                    exchange.identified(service, None, DEFAULT_ROUTE);
                }
                exchange.fail(&err)
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        carried: Carried,
        from: &Downstream,
        exchange: &mut Exchange,
    ) -> Result<Forwarded, ProxyError> {
        let max_hops = self.config.max_hops;
        if carried.via && via_hops(req.headers()) > max_hops as usize {
            return Err(loop_detected(format!(
                "more than {max_hops} proxies in Via"
            )));
        }
        let hops = hop_count(req.headers(), carried);
        if hops > max_hops {
            return Err(loop_detected(format!(
                "passed through {hops} weft proxies (maxHops {max_hops})"
            )));
        }
        if !self.authorizes(from.id.as_deref()) {
            let who = from.id.as_deref().unwrap_or("a plaintext client");
            return Err(ProxyError::new(
                ErrorKind::Unauthorized,
                format!("{who} may not call router {}", self.label()),
            ));
        }
        let (service, rewritten) = match identify::token(&self.config.identifier, &req) {
            Some(token) => {
                let token = token?;
                let prefix = &self.config.dst_prefix;
                let service = self
                    .clients
                    .service_by_token(token, || identify::under(prefix, [token]));
                (service, None)
            }
            None => {
                let id = identify(&self.config.identifier, &self.config.dst_prefix, &req)?;
                (self.clients.service(&id.name), id.rewritten)
            }
        };
        let name = &service.name;
        crate::record_in_span("service", name);
        let route = route::find(&self.config.service, name, req.method(), req.uri().path());
        exchange.identified(service.route_metrics(route.name), Some(name), route.name);
        route.authorize(from.id.as_deref())?;
        if self.tap.is_active() {
            exchange.set_tap(self.tap.matching(&TapRequest {
                router: self.label(),
                src: from.addr,
                tls: from.id.is_some(),
                method: req.method().as_str(),
                authority: authority(&req),
                path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                service: &name.to_string(),
                route: route.name,
            }));
        }
        let local = local_dtab(req.headers(), carried)?;
        if opaque::is_upgrade(&req, carried) {
            // Boxed: the upgrade path's state is large and rare; inline, every request's future
            // would carry it (and hyper moves that future once per request).
            let (uri, mut headers) = rewrite_request(
                req.uri().clone(),
                req.headers().clone(),
                req.version(),
                &local,
                rewritten,
                carried,
                self.config.via,
            )?;
            exchange.inject(&mut headers);
            let upgrade = opaque::Upgrade {
                clients: &self.clients,
                local: &local,
                service: &service,
                classifier: route.classifier,
                hops,
                tunnels: &from.tunnels,
                idle: self.config.tcp_idle_timeout,
                counters: [
                    self.metrics.tcp_bytes("to_upstream"),
                    self.metrics.tcp_bytes("to_downstream"),
                ],
            };
            return Box::pin(upgrade.forward(req, uri, headers)).await;
        }
        let (mut parts, body) = req.into_parts();
        // A request that a peer proxy carried over HTTP/2 goes on as the HTTP/1 it was, with
        // its header names spelled as its client sent them.
        if carried.orig_proto && parts.headers.remove(&ORIG_PROTO).is_some() {
            parts.version = Version::HTTP_11;
        }
        if carried.orig_case {
            if let Some(spellings) = parts.headers.remove(&ORIG_HEADER_CASE) {
                if let Some(ext) = self.case_maps.extensions(&spellings).await {
                    parts.extensions.extend(ext);
                    parts.extensions.insert(Spelled(spellings));
                }
            }
        }
        let (uri, mut headers) = rewrite_request(
            parts.uri,
            parts.headers,
            parts.version,
            &local,
            rewritten,
            carried,
            self.config.via,
        )?;
        exchange.inject(&mut headers);
        let service_cfg = &self.config.service;
        // Identified above, so the exchange has its service's metrics.
        let metrics = exchange.service().expect("identified");
        let dispatch = Dispatch {
            head: Head {
                method: parts.method,
                uri,
                version: parts.version,
                headers,
                extensions: parts.extensions,
                hops,
            },
            body: ReplayBody::new(body, service_cfg.retries.buffer_bytes),
            classifier: route.classifier,
            service: metrics,
            budget: &service.budget,
            backoff: service_cfg.retries.backoff,
            attempt_timeout: service_cfg.attempt_timeout,
        };
        // Boxed once here: awaited directly and under `timeout`, the unboxed future would
        // be laid out twice in this one, and moved with it.
        let run = Box::pin(dispatch.run(&self.clients, &local, &service));
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
}

fn loop_detected(detail: String) -> ProxyError {
    ProxyError::new(ErrorKind::LoopDetected, detail)
}
