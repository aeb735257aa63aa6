//! The state a router keeps per name, in one place: logical services ([`Service`]: binding,
//! retry budget, per-route metrics), bindings under per-request dtabs, and bound clients
//! (balancers, kept in step with discovery). Each sits in a bounded [`Cache`], because names
//! come from requests.
//!
//! [`Clients`] holds its own configuration and knows nothing of the router above it: the
//! router asks it for a request's service, the dispatcher and the opaque paths ask it to
//! [`bind`](Clients::bind) the service to a bound client for each attempt.

mod service;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::ServerName;
use weft_config::{ClientConfig, ClientTlsConfig, RetryBudget, RouterConfig};
use weft_naming::{
    BindState, Binding, BoundName, BoundTree, DelegateTree, Dtab, Interpreter, NameTree, Path,
    Sampled,
};
use weft_telemetry::{RouterMetrics, ServiceMetrics};
use weft_tls::{Identity, Origination};

use crate::cache::Cache;
use crate::endpoint::Balancer;
use crate::error::{ErrorKind, ProxyError};
use crate::tls::ClientTls;

pub(crate) use service::Service;

/// Bindings under a request's own dtab (`l5d-dtab`) kept at most.
const MAX_LOCAL_BINDINGS: usize = 1024;
/// Services with their own metrics series at most; more share `[overflow]`.
const MAX_SERVICES: usize = 1024;
/// Services, tokens and bound clients kept at most: bounds the memory a client can make the
/// proxy spend by sending many distinct Host headers.
const MAX_NAMES: usize = 4096;
const OVERFLOW_SERVICE: &str = "[overflow]";
/// The route label of requests that match no route of a service profile.
pub(crate) const DEFAULT_ROUTE: &str = "[default]";
const UNIDENTIFIED_SERVICE: &str = "[unidentified]";

/// One router's services, bindings and bound clients.
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
    /// Services by logical name.
    services: Cache<Path, Arc<Service>>,
    /// Services by the value a `header.token` identifier read (a Host): the usual request
    /// finds its service without building its name.
    tokens: Cache<Box<[u8]>, Arc<Service>>,
    /// The names that have metrics series of their own (at most [`MAX_SERVICES`], kept for
    /// the process's life so that the series stay bounded).
    labelled: Arc<Mutex<HashSet<Path>>>,
    /// Bindings under a dtab extended by request headers, by (local dtab text, name).
    local_bindings: Cache<(String, Path), Binding>,
    /// Bound clients, by bound id (shared with the router this one replaced on a reload,
    /// when their client settings and namers are the same).
    balancers: Arc<Cache<Path, Arc<Balancer>>>,
    /// The metrics of requests that could not be identified.
    unidentified: Arc<ServiceMetrics>,
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
        let unidentified = Arc::new(metrics.service(UNIDENTIFIED_SERVICE, DEFAULT_ROUTE));
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
            services: Cache::new(MAX_NAMES),
            tokens: Cache::new(MAX_NAMES),
            labelled: Arc::default(),
            local_bindings: Cache::new(MAX_LOCAL_BINDINGS),
            balancers: Arc::new(Cache::new(MAX_NAMES)),
            unidentified,
            #[cfg(test)]
            dial: None,
        }
    }

    /// These clients, carrying on from `previous` (the clients of the router they replace on
    /// a reload): they share the set of names with metrics series of their own, so that
    /// reloads do not raise the bound on series; and with `balancers`, the bound clients
    /// (endpoints, their connections, load estimates and failure accrual), which is right
    /// only when the client settings and the namers did not change.
    pub(crate) fn carrying_on(mut self, previous: &Clients, balancers: bool) -> Clients {
        self.labelled = previous.labelled.clone();
        if balancers {
            self.balancers = previous.balancers.clone();
        }
        self
    }

    /// TLS to servers outside the mesh, when `client.tls` asks for it.
    pub(crate) fn origination(&self) -> Option<&Origination> {
        self.origination.as_ref()
    }

    /// The same clients with in-memory endpoints served by `dial` (unit tests).
    #[cfg(test)]
    pub(crate) fn with_dial(mut self, dial: crate::endpoint::memory::Dial) -> Clients {
        self.dial = Some(dial);
        self
    }

    /// The service of the logical name `name` (made, and its binding started, on first use).
    pub(crate) fn service(&self, name: &Path) -> Arc<Service> {
        self.services.get_or_insert_with(name, || {
            let binding = self.interpreter.bind(self.dtab.clone(), name.clone());
            let label = self.label(name);
            Arc::new(Service::new(
                name.clone(),
                binding,
                &self.retry_budget,
                label,
                self.metrics.clone(),
            ))
        })
    }

    /// The service of the requests whose `header.token` identifier read `token`; `name`
    /// makes its logical name the first time.
    pub(crate) fn service_by_token(
        &self,
        token: &[u8],
        name: impl FnOnce() -> Path,
    ) -> Arc<Service> {
        if let Some(found) = self.tokens.get(token) {
            return found;
        }
        let service = self.service(&name());
        self.tokens.insert(token.into(), service)
    }

    /// The metrics of requests that could not be identified.
    pub(crate) fn unidentified(&self) -> Arc<ServiceMetrics> {
        self.unidentified.clone()
    }

    /// The `service` label for `name`: its own, while fewer than [`MAX_SERVICES`] names have
    /// one, else `[overflow]`.
    fn label(&self, name: &Path) -> Box<str> {
        let mut labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        if labelled.contains(name) || labelled.len() < MAX_SERVICES {
            labelled.insert(name.clone());
            return name.to_string().into();
        }
        OVERFLOW_SERVICE.into()
    }

    /// The bound client for one attempt of a request to `service` (under the router dtab
    /// plus `local`): the binding (waited for up to the binding timeout while a namer is
    /// pending), one bound name drawn by weight, and its balancer, in step with discovery.
    ///
    /// # Errors
    /// `binding-timeout` (a namer still pending), `binding-failed`, `no-such-service` (Neg),
    /// `no-endpoints` (bound to an empty set).
    pub(crate) async fn bind(
        &self,
        service: &Service,
        local: &Dtab,
    ) -> Result<Arc<Balancer>, ProxyError> {
        let name = &service.name;
        if !local.is_empty() {
            let key = (local.to_string(), name.clone());
            let binding = self.local_bindings.get_or_insert_with(&key, || {
                self.interpreter.bind(self.dtab.concat(local), name.clone())
            });
            let tree = match binding.bound() {
                Some(tree) => tree,
                None => Box::pin(self.bound(&binding, name)).await?,
            };
            return self.client(&tree, name);
        }
        let tree = match service.binding.bound() {
            Some(tree) => tree,
            // Boxed: waiting for a pending binding is rare, and its future large.
            None => Box::pin(self.bound(&service.binding, name)).await?,
        };
        if let Some(client) = service.last_client(&tree) {
            return Ok(client);
        }
        let client = self.client(&tree, name)?;
        if matches!(*tree, NameTree::Leaf(_)) {
            service.remember(tree, client.clone());
        }
        Ok(client)
    }

    /// The tree `binding` binds `name` to, waiting up to the binding timeout while it is
    /// pending.
    async fn bound(&self, binding: &Binding, name: &Path) -> Result<Arc<BoundTree>, ProxyError> {
        let mut state = binding.state();
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
        let tree = match &*state.borrow() {
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
        Ok(tree)
    }

    /// Draws one bound name of `tree` by weight and returns its balancer, in step with
    /// discovery.
    fn client(&self, tree: &BoundTree, name: &Path) -> Result<Arc<Balancer>, ProxyError> {
        let bound: &BoundName = match tree.sample(fastrand::f64) {
            Sampled::Bound(bound) => bound,
            Sampled::Neg => {
                return Err(ProxyError::new(ErrorKind::NoSuchService, name.to_string()))
            }
            Sampled::Fail => {
                return Err(ProxyError::new(ErrorKind::BindingFailed, name.to_string()))
            }
            Sampled::Empty => {
                return Err(ProxyError::new(ErrorKind::NoEndpoints, name.to_string()))
            }
        };
        let balancer = self.balancers.get_or_insert_with(&bound.id, || {
            let balancer = Balancer::new(
                self.client.for_bound(&bound.id),
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

    /// Explains how `path` binds under the router's dtab extended by `local` (as an
    /// `l5d-dtab` header would), waiting at most the binding timeout for namers.
    pub(crate) async fn delegate(&self, path: &Path, local: &Dtab) -> DelegateTree {
        self.delegate_under(&self.dtab.concat(local), path).await
    }

    /// The balancer state of the bound client `id`, if this router has built it.
    pub(crate) fn client_state(&self, id: &Path) -> Option<crate::endpoint::ClientState> {
        self.balancers.get(id).map(|b| b.state())
    }

    /// Explains how `path` would bind under `dtab` in place of the router's (the dtab
    /// playground); the router keeps its dtab and no client is built.
    pub(crate) async fn delegate_under(&self, dtab: &Dtab, path: &Path) -> DelegateTree {
        self.interpreter
            .delegate(dtab, path, self.binding_timeout)
            .await
    }

    /// TLS for a bound client: mesh TLS when its endpoints are peer proxies and `client.tls`
    /// (of the `client.configs` entry that matches the bound name, if any) names the
    /// identity they must present; TLS to servers outside the mesh for every bound
    /// client when `client.tls` has no `serverIdentity`.
    fn client_tls(&self, id: &Path) -> Option<ClientTls> {
        match self.client.for_bound(id).tls.as_ref()? {
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
