//! weft's data plane: listeners, the HTTP server and client, routing through dtabs and
//! namers, load balancing, proxy errors and graceful drain; and applying a new configuration
//! to running routers in place ([`Reloader`]).
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
#[doc(hidden)]
pub mod fuzz_support;
mod headers;
mod identity;
mod namers;
mod opaque;
mod reload;
mod router;
mod server;
mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_config::Config;
use weft_telemetry::access_log::AccessLog;
use weft_telemetry::tap::Tap;
use weft_telemetry::Metrics;

pub use dispatch::ProxyBody;
pub use endpoint::{ClientState, EndpointState};
pub use error::{ErrorKind, Fault, ProxyError, Retry};
pub use identity::identity_config;
pub use namers::interpreter;
pub use reload::{ReloadError, Reloaded, Reloader, Routers};
pub use router::Router;
pub use server::{AcceptMark, Inherited};

/// All routers of one configuration with their listeners bound, ready to serve.
pub struct Proxy {
    routers: Routers,
    tap: Arc<Tap>,
    identity: Option<weft_tls::Identity>,
    /// Each listener with the slot of its router (swapped by a reload).
    listeners: Vec<(RouterSlot, server::Listener)>,
    reloader: Reloader,
    accepts: AcceptMark,
}

/// Where a router lives while it serves: a reload swaps a new [`Router`] in; each request
/// loads the one in force once (an atomic load and an `Arc` clone, no lock) and keeps it
/// until it ends.
pub(crate) type RouterSlot = Arc<ArcSwap<Router>>;

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
            Some(settings) => Some(identity::load(settings).await?),
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
        let shared = reload::Shared {
            metrics: metrics.clone(),
            tap: tap.clone(),
            identity: identity.clone(),
            tracer,
            own,
        };
        let reaches_peers = reaches_peers(config);
        let mut routers = Vec::new();
        let mut listeners = Vec::new();
        let mut remote = Vec::new();
        for (rc, servers) in config.routers.iter().zip(bound) {
            let access_log = access_log(rc, metrics)?;
            let origination = origination(rc)?;
            let router_interpreter = namers::router_interpreter(rc, &interpreter)?;
            remote.push(
                router_interpreter
                    .is_remote()
                    .then(|| router_interpreter.clone()),
            );
            let router = shared.router(
                rc,
                router_interpreter,
                access_log,
                origination,
                reaches_peers,
            );
            let slot = Arc::new(ArcSwap::new(Arc::new(router)));
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
                listeners.push((slot.clone(), listener));
            }
            routers.push(slot);
        }
        let routers = Routers::new(routers);
        let reloader = Reloader::new(config.clone(), routers.clone(), interpreter, remote, shared);
        Ok(Proxy {
            routers,
            tap,
            listeners,
            identity,
            reloader,
            accepts: AcceptMark::default(),
        })
    }

    /// The handle that logs the next connection accepted on any listener (see
    /// [`AcceptMark`]); a successor arms it once its predecessor stopped accepting.
    pub fn accept_mark(&self) -> AcceptMark {
        self.accepts.clone()
    }

    /// Every router with the addresses its servers actually listen on (port 0 resolved).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(r, l)| {
                let addr = l.listener.local_addr().ok()?;
                Some((r.load().label().to_string(), addr))
            })
            .collect()
    }

    /// Duplicates of every router's listening socket, each named after its router's label,
    /// to hand to a successor process (`weft proxy --upgrade`): the socket stays open, and
    /// its accept queue intact, for as long as either process holds it.
    ///
    /// # Errors
    /// The descriptor cannot be duplicated (out of descriptors).
    pub fn listener_sockets(&self) -> io::Result<Vec<(String, std::os::fd::OwnedFd)>> {
        use std::os::fd::AsFd;
        self.listeners
            .iter()
            .map(|(r, l)| {
                Ok((
                    r.load().label().to_string(),
                    l.listener.as_fd().try_clone_to_owned()?,
                ))
            })
            .collect()
    }

    /// The routers in force, in config order (shared with the admin server; a reload
    /// swaps routers in place, and the handle follows).
    pub fn routers(&self) -> Routers {
        self.routers.clone()
    }

    /// The health of every configured namer that talks to a backend, with its prefix (for
    /// `/namers.json`, the `weft_namer_*` metrics and `weft check`). A reload that changes
    /// the namers changes this list: see [`Reloader::namer_statuses`].
    pub fn namer_statuses(&self) -> Vec<(weft_naming::Path, weft_naming::NamerStatus)> {
        self.reloader.namer_statuses()
    }

    /// The handle that applies a new configuration to these routers in place (live config
    /// reload); take it before [`Proxy::serve`].
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The proxy's mTLS identity, if configured (for expiry and reload metrics).
    pub fn identity(&self) -> Option<weft_tls::Identity> {
        self.identity.clone()
    }

    /// The tap registry shared by every router (for the admin server's `/tap`).
    pub fn tap(&self) -> Arc<Tap> {
        self.tap.clone()
    }

    /// Serves until `shutdown` fires, then drains: HTTP/1 responses carry `Connection:
    /// close`, HTTP/2 connections get GOAWAY, connections accepted from then on included.
    /// When `close` fires (at once after `shutdown` for a handed-over listener; after
    /// `admin.drainAnnounce` on a signal) the listeners stop accepting; connections get at
    /// most `grace` from `shutdown`. Returns true if every connection finished in time.
    pub async fn serve(
        self,
        shutdown: CancellationToken,
        close: CancellationToken,
        grace: Duration,
    ) -> bool {
        let tasks: Vec<_> = self
            .listeners
            .into_iter()
            .map(|(slot, listener)| {
                tokio::spawn(server::serve(
                    listener,
                    slot,
                    shutdown.clone(),
                    close.clone(),
                    grace,
                    self.accepts.clone(),
                ))
            })
            .collect();
        let mut clean = true;
        for task in tasks {
            clean &= task.await.unwrap_or(false);
        }
        clean
    }
}

/// Whether requests may cross to peer proxies: a namer has a `port` transformer.
fn reaches_peers(config: &Config) -> bool {
    config.namers.iter().any(|n| {
        n.transformers
            .iter()
            .any(|t| matches!(t, weft_config::TransformerConfig::Port { .. }))
    })
}

/// The access log a router's config asks for (opened, with its writer task).
fn access_log(rc: &weft_config::RouterConfig, metrics: &Metrics) -> io::Result<Option<AccessLog>> {
    let Some(cfg) = &rc.access_log else {
        return Ok(None);
    };
    AccessLog::new(cfg, &rc.label, metrics)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("router {}: access log: {e}", rc.label)))
}

/// The trust roots for TLS to servers outside the mesh, when the router's `client.tls` asks
/// for it (loaded and watched).
fn origination(rc: &weft_config::RouterConfig) -> io::Result<Option<weft_tls::Origination>> {
    let Some(weft_config::ClientTlsConfig::Origin { trust_roots, .. }) = &rc.client.tls else {
        return Ok(None);
    };
    let origination = weft_tls::Origination::load(trust_roots).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("router {}: client.tls: {e}", rc.label),
        )
    })?;
    origination.watch();
    Ok(Some(origination))
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
