//! weft's data plane: listeners, the HTTP server and client, routing through dtabs and
//! namers, load balancing, proxy errors and graceful drain.
//!
//! This crate owns the request path from accept to upstream and back. It does not own
//! configuration parsing (`weft-config`), naming semantics (`weft-naming`), metric names
//! (`weft-telemetry`) or the admin server (`weft-admin`).

mod accrual;
mod balance;
#[doc(hidden)]
pub mod bench_support;
mod body;
mod classify;
mod client;
mod detect;
mod error;
mod forward;
mod handshake;
mod headers;
mod identify;
mod keep_alive;
mod namers;
mod observe;
mod replay;
mod router;
mod server;
mod tap;
mod tcp;
mod tls;
mod upgrade;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_config::Config;
use weft_telemetry::Metrics;

pub use body::ProxyBody;
pub use error::{ErrorKind, Fault, ProxyError};
pub use namers::interpreter;
pub use router::Router;
pub use tap::{Tap, TapEvent, TapFilter, TapSubscription};

/// All routers of one configuration with their listeners bound, ready to serve.
pub struct Proxy {
    routers: Vec<Arc<Router>>,
    tap: Arc<Tap>,
    identity: Option<weft_tls::Identity>,
    listeners: Vec<(Arc<Router>, server::Listener)>,
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
        let interpreter = namers::interpreter(&config.namers);
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
        let mut routers = Vec::new();
        let mut listeners = Vec::new();
        for rc in &config.routers {
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
            let mut router = Router::new(
                rc.clone(),
                interpreter.clone(),
                metrics.router(&rc.label),
                tap.clone(),
                identity.clone(),
                tracer.clone(),
                access_log,
            );
            if let Some(weft_config::ClientTlsConfig::Origin { trust_roots, .. }) = &rc.client.tls {
                let origination = weft_tls::Origination::load(trust_roots).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("router {}: client.tls: {e}", rc.label),
                    )
                })?;
                origination.watch();
                router.set_origination(origination);
            }
            let router = Arc::new(router);
            for server in &rc.servers {
                let ingress = match &server.tls {
                    Some(tls) => Some(ingress_tls(&rc.label, server.addr, tls)?),
                    None => None,
                };
                let listener = TcpListener::bind(server.addr).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("router {}: cannot listen on {}: {e}", rc.label, server.addr),
                    )
                })?;
                listeners.push((router.clone(), server::Listener { listener, ingress }));
            }
            routers.push(router);
        }
        Ok(Proxy {
            routers,
            tap,
            listeners,
            identity,
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
