//! weft's data plane: listeners, the HTTP server and client, routing through dtabs and
//! namers, load balancing, proxy errors and graceful drain.
//!
//! This crate owns the request path from accept to upstream and back. It does not own
//! configuration parsing (`weft-config`), naming semantics (`weft-naming`), metric names
//! (`weft-telemetry`) or the admin server (`weft-admin`).

/// Implements `tokio::io::AsyncWrite` for a wrapper of one I/O object by forwarding every
/// call to its field `$field`: the wrappers that look at what is read (detection replay,
/// HTTP/1 connection timeouts, the HTTP/2 preface) write through unchanged.
macro_rules! forward_async_write {
    ($ty:ident, $field:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_shutdown(cx)
            }
        }
    };
}

// The request path, top to bottom: server -> router -> clients, dispatch, opaque -> endpoint
// -> tls; error, headers and cache below all. Nothing below the router imports it
// (docs/architecture.md).
#[doc(hidden)]
pub mod bench_support;
mod cache;
mod clients;
mod dispatch;
mod endpoint;
mod error;
mod headers;
mod namers;
mod opaque;
mod router;
mod server;
mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_config::Config;
use weft_telemetry::tap::Tap;
use weft_telemetry::Metrics;

pub use dispatch::ProxyBody;
pub use error::{ErrorKind, Fault, ProxyError, Retry};
pub use namers::interpreter;
pub use router::Router;
pub use server::Inherited;

/// All routers of one configuration with their listeners bound, ready to serve.
pub struct Proxy {
    routers: Vec<Arc<Router>>,
    tap: Arc<Tap>,
    identity: Option<weft_tls::Identity>,
    listeners: Vec<(Arc<Router>, server::Listener)>,
    interpreter: weft_naming::Interpreter,
    /// The routers' own interpreters (`interpreter: {kind: control}`), for their status.
    remote: Vec<weft_naming::Interpreter>,
}

// === impl Proxy ===

impl Proxy {
    /// Builds the namers and routers of `config` and binds every server's listener. Must run
    /// inside a tokio runtime (namers start watching at once).
    ///
    /// Errors: a listener that cannot be bound (address in use, permission), or TLS files that
    /// do not load (identity, `client.tls.trustRoots`, ingress certificates), naming the
    /// router and address or file.
    pub async fn bind(config: &Config, metrics: &Metrics) -> io::Result<Proxy> {
        Proxy::bind_inherited(config, metrics, &mut Inherited::default()).await
    }

    /// Like [`Proxy::bind`], but a router's listener is taken from `inherited` (systemd
    /// socket activation) when a socket there is named after the router or listens on the
    /// server's address; the others are bound as usual.
    ///
    /// # Errors
    /// As [`Proxy::bind`].
    pub async fn bind_inherited(
        config: &Config,
        metrics: &Metrics,
        inherited: &mut Inherited,
    ) -> io::Result<Proxy> {
        let interpreter = namers::interpreter(&config.namers)?;
        let identity = match &config.identity {
            Some(settings) => {
                let identity = weft_tls::Identity::load(&weft_tls::IdentityConfig {
                    cert: settings.cert.clone(),
                    key: settings.key.clone(),
                    trust_bundle: settings.trust_bundle.clone(),
                })
                .map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("identity: {e}"))
                })?;
                identity.watch();
                tracing::info!(id = %identity.spiffe_id(), "identity loaded");
                Some(identity)
            }
            None => None,
        };
        let tap = Arc::new(Tap::default());
        let tracer = weft_telemetry::trace::Tracer::new(config.tracing.as_ref(), metrics);
        // Listeners first: every router must know all of this proxy's addresses, to tell a
        // request to itself (which must carry a hop count) from one to an application.
        let mut bound = Vec::new();
        for rc in &config.routers {
            let mut servers = Vec::new();
            for server in &rc.servers {
                let listener = match inherited.take(&rc.label, server.addr) {
                    Some(socket) => Inherited::into_tokio(socket)?,
                    None => TcpListener::bind(server.addr).await.map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("router {}: cannot listen on {}: {e}", rc.label, server.addr),
                        )
                    })?,
                };
                servers.push((server, listener));
            }
            bound.push(servers);
        }
        let own = own_addresses(bound.iter().flatten().map(|(_, l)| l));
        let reaches_peers = config.namers.iter().any(|n| {
            n.transformers
                .iter()
                .any(|t| matches!(t, weft_config::TransformerConfig::Port { .. }))
        });
        let mut routers = Vec::new();
        let mut listeners = Vec::new();
        let mut remote = Vec::new();
        for (rc, servers) in config.routers.iter().zip(bound) {
            let router_interpreter = namers::router_interpreter(rc, &interpreter)?;
            if router_interpreter.is_remote() {
                remote.push(router_interpreter.clone());
            }
            let access_log = match &rc.access_log {
                Some(cfg) => Some(
                    weft_telemetry::access_log::AccessLog::new(cfg, &rc.label, metrics).map_err(
                        |e| {
                            io::Error::new(
                                e.kind(),
                                format!("router {}: access log: {e}", rc.label),
                            )
                        },
                    )?,
                ),
                None => None,
            };
            let origination = match &rc.client.tls {
                Some(weft_config::ClientTlsConfig::Origin { trust_roots, .. }) => {
                    let origination = weft_tls::Origination::load(trust_roots).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("router {}: client.tls: {e}", rc.label),
                        )
                    })?;
                    origination.watch();
                    Some(origination)
                }
                _ => None,
            };
            let router = Arc::new(Router::new(
                rc.clone(),
                router::Parts {
                    interpreter: router_interpreter,
                    metrics: metrics.router(&rc.label),
                    tap: tap.clone(),
                    identity: identity.clone(),
                    origination,
                    tracer: tracer.clone(),
                    access_log,
                    own: own.clone(),
                    reaches_peers,
                },
            ));
            for (server, listener) in servers {
                let ingress = match &server.tls {
                    Some(tls) => Some(ingress_tls(&rc.label, server.addr, tls)?),
                    None => None,
                };
                let listener = server::Listener {
                    listener,
                    ingress,
                    clear_context: server.clear_context,
                };
                listeners.push((router.clone(), listener));
            }
            routers.push(router);
        }
        Ok(Proxy {
            routers,
            tap,
            listeners,
            identity,
            interpreter,
            remote,
        })
    }

    /// Every router with the addresses its servers actually listen on (port 0 resolved).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(r, l)| Some((r.label().to_string(), l.listener.local_addr().ok()?)))
            .collect()
    }

    /// The routers, in config order (shared with the admin server).
    pub fn routers(&self) -> Vec<Arc<Router>> {
        self.routers.clone()
    }

    /// The health of every configured namer that talks to a backend, and of every router's
    /// connection to the control plane (`/$/control/<router>`), with its prefix (for
    /// `/namers.json`, the `weft_namer_*` metrics and `weft check`).
    pub fn namer_statuses(&self) -> Vec<(weft_naming::Path, weft_naming::NamerStatus)> {
        let mut statuses = self.interpreter.namer_statuses();
        for remote in &self.remote {
            statuses.extend(remote.namer_statuses());
        }
        statuses
    }

    /// The proxy's mTLS identity, if configured (for expiry and reload metrics).
    pub fn identity(&self) -> Option<weft_tls::Identity> {
        self.identity.clone()
    }

    /// The tap registry shared by every router (for the admin server's `/tap`).
    pub fn tap(&self) -> Arc<Tap> {
        self.tap.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting and drains connections for at
    /// most `grace`. Returns true if every connection finished in time.
    pub async fn serve(self, shutdown: CancellationToken, grace: Duration) -> bool {
        let tasks: Vec<_> = self
            .listeners
            .into_iter()
            .map(|(router, listener)| {
                tokio::spawn(server::serve(listener, router, shutdown.clone(), grace))
            })
            .collect();
        let mut clean = true;
        for task in tasks {
            clean &= task.await.unwrap_or(false);
        }
        clean
    }
}

/// Records `value` as `field` (`service`, `endpoint`) of the current request's span (see
/// `server::request_span`). Costs one check when debug logging is off.
fn record_in_span(field: &'static str, value: &dyn std::fmt::Display) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record(field, tracing::field::display(value));
    }
}

/// The addresses this process listens on, as an endpoint would name them: a listener on an
/// unspecified address (`0.0.0.0`, `::`) is there on loopback and on every local interface.
fn own_addresses<'a>(listeners: impl Iterator<Item = &'a TcpListener>) -> Arc<[SocketAddr]> {
    let mut own = Vec::new();
    let mut interfaces: Option<Vec<IpAddr>> = None;
    for addr in listeners.filter_map(|l| l.local_addr().ok()) {
        if !addr.ip().is_unspecified() {
            own.push(addr);
            continue;
        }
        let ips = interfaces.get_or_insert_with(|| {
            let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
                .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
                .unwrap_or_default();
            ips.extend([
                IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ]);
            ips
        });
        let v4 = addr.is_ipv4();
        own.extend(
            ips.iter()
                .filter(|ip| ip.is_ipv4() == v4 || !v4)
                .map(|ip| SocketAddr::new(*ip, addr.port())),
        );
    }
    own.into()
}

/// Loads and watches an ingress listener's certificates; returns its rustls config.
fn ingress_tls(
    router: &str,
    addr: SocketAddr,
    tls: &weft_config::IngressTlsConfig,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let pairs: Vec<_> = tls
        .certificates
        .iter()
        .map(|c| (c.cert.clone(), c.key.clone()))
        .collect();
    let certs = weft_tls::ServerCertificates::load(&pairs).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("router {router}: ingress TLS on {addr}: {e}"),
        )
    })?;
    certs.watch();
    tracing::info!(%router, %addr, names = ?certs.names(), "ingress TLS certificates loaded");
    Ok(certs.server_config())
}
