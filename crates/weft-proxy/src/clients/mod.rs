//! The state a router keeps per name, in one place: bindings of logical names through the
//! dtab and namers, bound clients (balancers, kept in step with discovery), retry budgets and
//! per-service metrics handles. Each sits in a bounded [`Cache`], because names come from
//! requests.
//!
//! [`Clients`] holds its own configuration and knows nothing of the router above it: the
//! router asks it for a service's metrics and budget, the dispatcher and the opaque paths ask
//! it to [`bind`](Clients::bind) a name to a bound client for each attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tower::retry::budget::TpsBudget;
use weft_config::{ClientConfig, ClientTlsConfig, RetryBudget, RouterConfig};
use weft_naming::{
    BindState, Binding, BoundName, BoundTree, DelegateTree, Dtab, Interpreter, Path, Sampled,
};
use weft_telemetry::{RouterMetrics, ServiceMetrics};
use weft_tls::{Identity, Origination};

use crate::cache::Cache;
use crate::endpoint::Balancer;
use crate::error::{ErrorKind, ProxyError};
use crate::tls::ClientTls;

/// Bindings under a request's own dtab (`l5d-dtab`) kept at most.
const MAX_LOCAL_BINDINGS: usize = 1024;
/// Services with their own metrics series at most; more share `[overflow]`.
const MAX_SERVICES: usize = 1024;
/// Bindings and bound clients kept at most: bounds the memory a client can make the proxy
/// spend by sending many distinct Host headers.
const MAX_NAMES: usize = 4096;
const OVERFLOW_SERVICE: &str = "[overflow]";
const UNIDENTIFIED_SERVICE: &str = "[unidentified]";

/// The metrics handles of one logical service's routes, by route name (few per name: the
/// profile's routes and `[default]`; a list, so a lookup borrows the route name).
type RouteMetrics = Vec<(Box<str>, ServiceMetrics)>;

/// One router's bindings, bound clients, retry budgets and service metrics.
pub(crate) struct Clients {
    dtab: Dtab,
    binding_timeout: Duration,
    client: ClientConfig,
    retry_budget: RetryBudget,
    interpreter: Interpreter,
    metrics: RouterMetrics,
    /// The proxy's mTLS identity, for mesh TLS to peer proxies.
    identity: Option<Identity>,
    /// TLS to servers outside the mesh (`client.tls` without `serverIdentity`).
    origination: Option<Origination>,
    /// Every address this process listens on: an endpoint there is this proxy itself.
    own: Arc<[SocketAddr]>,
    /// Bindings under the router's own dtab, by logical name.
    bindings: Cache<Path, Binding>,
    /// Bindings under a dtab extended by request headers, by (local dtab text, name).
    local_bindings: Cache<(String, Path), Binding>,
    /// Bound clients, by bound id.
    balancers: Cache<Path, Arc<Balancer>>,
    services: Cache<Path, RouteMetrics>,
    budgets: Cache<Path, Arc<TpsBudget>>,
    /// Unit tests: endpoints are in-memory servers.
    #[cfg(test)]
    dial: Option<crate::endpoint::memory::Dial>,
}

// === impl Clients ===

impl Clients {
    /// The per-name state of the router configured by `config`.
    pub(crate) fn new(
        config: &RouterConfig,
        interpreter: Interpreter,
        metrics: RouterMetrics,
        identity: Option<Identity>,
        origination: Option<Origination>,
        own: Arc<[SocketAddr]>,
    ) -> Clients {
        Clients {
            dtab: config.dtab.clone(),
            binding_timeout: config.binding_timeout,
            client: config.client.clone(),
            retry_budget: config.service.retries.budget.clone(),
            interpreter,
            metrics,
            identity,
            origination,
            own,
            bindings: Cache::new(MAX_NAMES),
            local_bindings: Cache::new(MAX_LOCAL_BINDINGS),
            balancers: Cache::new(MAX_NAMES),
            services: Cache::new(MAX_SERVICES),
            budgets: Cache::new(MAX_SERVICES),
            #[cfg(test)]
            dial: None,
        }
    }

    /// The same clients with in-memory endpoints served by `dial` (unit tests).
    #[cfg(test)]
    pub(crate) fn with_dial(mut self, dial: crate::endpoint::memory::Dial) -> Clients {
        self.dial = Some(dial);
        self
    }

    /// The bound client for one attempt: binds `name` under the router dtab plus `local`
    /// (waiting for pending namers up to the binding timeout), draws one bound name by
    /// weight, and returns its balancer, in step with discovery.
    ///
    /// # Errors
    /// `binding-timeout` (a namer still pending), `binding-failed`, `no-such-service` (Neg),
    /// `no-endpoints` (bound to an empty set).
    pub(crate) async fn bind(
        &self,
        local: &Dtab,
        name: &Path,
    ) -> Result<Arc<Balancer>, ProxyError> {
        let bound = self.bound_name(local, name).await?;
        let balancer = self.balancers.get_or_insert_with(&bound.id, || {
            let balancer = Balancer::new(
                &self.client,
                self.metrics.client(&bound.id.to_string()),
                is_meshed(&bound.id),
                self.client_tls(&bound.id),
                self.own.clone(),
            );
            #[cfg(test)]
            let balancer = match &self.dial {
                Some(dial) => balancer.with_dial(dial.clone()),
                None => balancer,
            };
            Arc::new(balancer)
        });
        balancer.update(&bound.addrs);
        Ok(balancer)
    }

    async fn bound_name(&self, local: &Dtab, name: &Path) -> Result<BoundName, ProxyError> {
        let binding = self.binding(local, name);
        let mut state = binding.state();
        // Almost always bound already: wait (under a timer, which reads the clock) only for
        // a binding still pending.
        if matches!(*state.borrow(), BindState::Pending) {
            tokio::time::timeout(
                self.binding_timeout,
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
            return self.bindings.get_or_insert_with(name, || {
                self.interpreter.bind(self.dtab.clone(), name.clone())
            });
        }
        let key = (local.to_string(), name.clone());
        self.local_bindings.get_or_insert_with(&key, || {
            self.interpreter.bind(self.dtab.concat(local), name.clone())
        })
    }

    /// Explains how `path` binds under the router's dtab extended by `local` (as an
    /// `l5d-dtab` header would), waiting at most the binding timeout for namers.
    pub(crate) async fn delegate(&self, path: &Path, local: &Dtab) -> DelegateTree {
        let dtab = self.dtab.concat(local);
        self.interpreter
            .delegate(&dtab, path, self.binding_timeout)
            .await
    }

    /// The metrics of one route of the logical service `name` (`None`: a request that could
    /// not be identified). Past [`MAX_SERVICES`] names, new ones share `[overflow]`.
    pub(crate) fn service_metrics(&self, name: Option<&Path>, route: &str) -> ServiceMetrics {
        let Some(name) = name else {
            return self.metrics.service(UNIDENTIFIED_SERVICE, route);
        };
        let find = |routes: &RouteMetrics| {
            routes
                .iter()
                .find(|(r, _)| &**r == route)
                .map(|(_, m)| m.clone())
        };
        let add = |routes: &mut RouteMetrics| {
            let metrics = self.metrics.service(&name.to_string(), route);
            routes.push((route.into(), metrics.clone()));
            metrics
        };
        let full = || self.metrics.service(OVERFLOW_SERVICE, route);
        self.services.find_or_add(name, find, add, full)
    }

    /// The retry budget of a logical service, shared by all its requests.
    pub(crate) fn retry_budget(&self, name: &Path) -> Arc<TpsBudget> {
        let cfg = &self.retry_budget;
        self.budgets.get_or_insert_with(name, || {
            Arc::new(TpsBudget::new(
                cfg.ttl,
                cfg.min_retries_per_sec,
                cfg.percent_can_retry as f32,
            ))
        })
    }

    /// TLS for a bound client: mesh TLS when its endpoints are peer proxies and `client.tls`
    /// names the identity they must present; TLS to servers outside the mesh for every bound
    /// client when `client.tls` has no `serverIdentity`.
    fn client_tls(&self, id: &Path) -> Option<ClientTls> {
        match self.client.tls.as_ref()? {
            ClientTlsConfig::Mesh {
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
            ClientTlsConfig::Origin { server_name, .. } => {
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
