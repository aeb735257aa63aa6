//! Live config reload: the routers in force ([`Routers`], one slot per router) and the
//! [`Reloader`] that swaps new routers into those slots when the configuration changes.
//!
//! A reload changes routers, dtabs, namers, client and service policies in place: listeners
//! stay open, connections stay up, a request in flight keeps the router it loaded when it
//! started, and the next request (on any connection, new or kept alive) loads the new one.
//! What cannot change in place (listeners, the admin server, process-wide telemetry) is
//! refused as a whole ([`plan`]), and the configuration in force stays.

mod plan;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use weft_config::{Config, RouterConfig};
use weft_naming::Interpreter;
use weft_telemetry::access_log::AccessLog;
use weft_telemetry::tap::Tap;
use weft_telemetry::trace::Tracer;
use weft_telemetry::Metrics;

use crate::router::{self, Router};
use crate::RouterSlot;
use plan::plan;

/// The routers in force, in config order. Cheap to clone; every clone sees the routers a
/// reload swaps in.
#[derive(Clone)]
pub struct Routers {
    slots: Arc<[RouterSlot]>,
}

/// Applies new configurations to a running proxy's routers (see the module docs). Cheap to
/// clone; clones share the configuration in force, and reloads through them are serialized.
#[derive(Clone)]
pub struct Reloader {
    state: Arc<Mutex<State>>,
}

/// What a successful [`Reloader::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The new configuration equals the one in force; nothing was rebuilt.
    Unchanged,
    /// Routers were rebuilt and swapped in.
    Applied {
        /// The labels of the routers swapped in, in config order.
        routers: Vec<String>,
        /// Whether the namers changed (a new naming interpreter; every router rebuilt).
        namers: bool,
    },
}

/// Why a configuration could not be applied; the configuration in force stays.
///
/// Displays its reasons joined by `; `. [`ReloadError::needs_restart`] tells a change that only
/// a restart (or `weft proxy --upgrade`) can apply from a failure to build what the new
/// configuration names (a namer's backend settings, an access log file, TLS trust roots).
pub struct ReloadError {
    reasons: Vec<String>,
    restart: bool,
}

struct State {
    config: Config,
    routers: Routers,
    /// The process's namers.
    interpreter: Interpreter,
    /// Each router's own interpreter when it binds through the control plane
    /// (`interpreter: {kind: control}`), by router index; kept while that section is
    /// unchanged, so its streams to control and its last state survive a reload.
    remote: Vec<Option<Interpreter>>,
    shared: Shared,
}

/// What every router of the process shares and a reload keeps.
pub(crate) struct Shared {
    pub(crate) metrics: Metrics,
    pub(crate) tap: Arc<Tap>,
    pub(crate) identity: Option<weft_tls::Identity>,
    /// Trace export is process-wide; a change of `tracing` is refused.
    pub(crate) tracer: Tracer,
    /// Every address this process listens on (listeners do not change on reload).
    pub(crate) own: Arc<[SocketAddr]>,
}

// === impl Shared ===

impl Shared {
    /// The router `rc` configures, on `interpreter`, with what the process shares (its
    /// `router` metrics handle, tap, identity, tracer, own addresses) and what its config
    /// opened (`access_log`, `origination`). The one place routers are made, at start and on
    /// reload.
    pub(crate) fn router(
        &self,
        rc: &RouterConfig,
        interpreter: Interpreter,
        access_log: Option<AccessLog>,
        origination: Option<weft_tls::Origination>,
        reaches_peers: bool,
    ) -> Router {
        Router::new(
            rc.clone(),
            router::Parts {
                interpreter,
                metrics: self.metrics.router(&rc.label),
                tap: self.tap.clone(),
                identity: self.identity.clone(),
                origination,
                tracer: self.tracer.clone(),
                access_log,
                own: self.own.clone(),
                reaches_peers,
            },
        )
    }
}

// === impl Routers ===

impl Routers {
    pub(crate) fn new(slots: Vec<RouterSlot>) -> Routers {
        Routers {
            slots: slots.into(),
        }
    }

    /// The routers in force now, in config order.
    pub fn current(&self) -> Vec<Arc<Router>> {
        self.slots.iter().map(|s| s.load_full()).collect()
    }

    /// The router in force labelled `label`, if there is one.
    pub fn get(&self, label: &str) -> Option<Arc<Router>> {
        self.slots
            .iter()
            .map(|s| s.load_full())
            .find(|r| r.label() == label)
    }

    /// How many routers there are (a reload never changes it).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there is no router (never, for a validated configuration).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

// === impl Reloader ===

impl Reloader {
    pub(crate) fn new(
        config: Config,
        routers: Routers,
        interpreter: Interpreter,
        remote: Vec<Option<Interpreter>>,
        shared: Shared,
    ) -> Reloader {
        Reloader {
            state: Arc::new(Mutex::new(State {
                config,
                routers,
                interpreter,
                remote,
                shared,
            })),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// The health records of the namers in force (they change when a reload changes the
    /// namers), then of each router's connection to the control plane
    /// (`/$/control/<router>`), with their prefixes.
    pub fn namer_statuses(&self) -> Vec<(weft_naming::Path, weft_naming::NamerStatus)> {
        let state = self.lock();
        let mut statuses = state.interpreter.namer_statuses();
        for remote in state.remote.iter().flatten() {
            statuses.extend(remote.namer_statuses());
        }
        statuses
    }

    /// Applies `new` in place of the configuration in force. Must run inside the tokio
    /// runtime that serves the proxy (new namers start watching at once).
    ///
    /// Unchanged settings are not rebuilt: a router whose settings did not change is kept
    /// as it is; the naming interpreter (namer watches and caches) is kept unless `namers`
    /// changed; an access log and `client.tls` trust roots whose settings did not change are
    /// reused. A rebuilt router binds its names anew (under its new dtab); it keeps the
    /// previous router's bound clients (endpoints, upstream connections, load estimates,
    /// failure accrual) unless its `client` settings or the namers changed, in which case
    /// it starts new ones. Requests in flight finish on the router they started with, which
    /// is dropped when the last of them ends.
    ///
    /// Everything is built before anything is swapped in: on error nothing changed.
    ///
    /// # Errors
    /// A change that cannot be applied while running ([`ReloadError::needs_restart`]): the
    /// set of routers, a listener, the admin server, `tracing`, `statsd`, `identity`. Or a
    /// namer, access log or `client.tls` of the new configuration that cannot be built.
    pub fn apply(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let mut state = self.lock();
        let plan = plan(&state.config, &new).map_err(|reasons| ReloadError {
            reasons,
            restart: true,
        })?;
        if plan.is_empty() {
            state.config = new;
            return Ok(Reloaded::Unchanged);
        }
        let built = |e: io::Error| ReloadError {
            reasons: vec![e.to_string()],
            restart: false,
        };
        let interpreter = if plan.namers {
            crate::namers::interpreter(&new.namers).map_err(built)?
        } else {
            state.interpreter.clone()
        };
        let reaches_peers = crate::reaches_peers(&new);
        let shared = &state.shared;
        let mut swaps = Vec::new();
        let mut remote = state.remote.clone();
        for (i, rebuild) in plan.routers.iter().enumerate() {
            if !rebuild {
                continue;
            }
            let (slot, rc) = (&state.routers.slots[i], &new.routers[i]);
            let old = slot.load_full();
            let before = old.config();
            let access_log = if before.access_log == rc.access_log {
                old.access_log().cloned()
            } else {
                crate::access_log(rc, &shared.metrics).map_err(built)?
            };
            let origination = if before.client.tls == rc.client.tls {
                old.clients().origination().cloned()
            } else {
                crate::origination(rc).map_err(built)?
            };
            let router_interpreter = match &remote[i] {
                Some(kept) if before.interpreter == rc.interpreter => kept.clone(),
                _ => crate::namers::router_interpreter(rc, &interpreter).map_err(built)?,
            };
            remote[i] = router_interpreter
                .is_remote()
                .then(|| router_interpreter.clone());
            // Same client settings (TLS included), namers and interpreter: the bound clients
            // stay, with their upstream connections, load estimates and failure accrual.
            let keep_clients =
                !plan.namers && before.client == rc.client && before.interpreter == rc.interpreter;
            let router = shared
                .router(
                    rc,
                    router_interpreter,
                    access_log,
                    origination,
                    reaches_peers,
                )
                .carrying_on(&old, keep_clients);
            swaps.push((slot.clone(), Arc::new(router)));
        }
        let routers = swaps
            .into_iter()
            .map(|(slot, router)| {
                let label = router.label().to_string();
                slot.store(router);
                label
            })
            .collect();
        state.interpreter = interpreter;
        state.remote = remote;
        state.config = new;
        Ok(Reloaded::Applied {
            routers,
            namers: plan.namers,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl ReloadError ===

impl ReloadError {
    /// True when the new configuration changes something only a restart (or `weft proxy
    /// --upgrade`) can apply: listeners, the set of routers, the admin server, process-wide
    /// telemetry, the identity's files.
    pub fn needs_restart(&self) -> bool {
        self.restart
    }

    /// Every reason, one line each.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join("; "))
    }
}

impl fmt::Debug for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.reasons).finish()
    }
}

impl std::error::Error for ReloadError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dtab: &str, port: u16) -> Config {
        let text = format!(
            "admin: {{ip: 127.0.0.1, port: 0}}\n\
             routers:\n\
             - label: outbound\n  servers: [{{ip: 127.0.0.1, port: {port}}}]\n  dtab: '{dtab}'\n\
             - label: inbound\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n  dtab: '/svc => /$/inet/127.0.0.1/9;'\n"
        );
        Config::parse(&text, "weft.yaml").expect("valid test config")
    }

    /// A proxy bound on ephemeral ports, with its config, reloader and routers.
    async fn started() -> (Config, crate::Proxy, Reloader, Routers) {
        let start = config("/svc => /$/inet/127.0.0.1/1;", 0);
        let proxy = crate::Proxy::bind(&start, &Metrics::new("test"))
            .await
            .expect("bind on ephemeral ports");
        let (reloader, routers) = (proxy.reloader(), proxy.routers());
        (start, proxy, reloader, routers)
    }

    #[tokio::test]
    async fn apply_swaps_changed_routers_and_keeps_the_rest() {
        let (_, _proxy, reloader, routers) = started().await;
        let inbound = routers.get("inbound").expect("inbound");

        let new = config("/svc => /$/inet/127.0.0.1/2;", 0);
        let done = reloader.apply(new.clone()).expect("applies");
        assert_eq!(
            done,
            Reloaded::Applied {
                routers: vec!["outbound".into()],
                namers: false
            }
        );
        let outbound = routers.get("outbound").expect("outbound");
        assert_eq!(outbound.config(), &new.routers[0]);
        assert!(
            Arc::ptr_eq(&inbound, &routers.get("inbound").expect("inbound")),
            "an unchanged router is not rebuilt"
        );
        assert_eq!(
            reloader.apply(new.clone()).expect("applies"),
            Reloaded::Unchanged
        );
        assert!(Arc::ptr_eq(
            &outbound,
            &routers.get("outbound").expect("outbound")
        ));
    }

    #[tokio::test]
    async fn a_refused_reload_changes_nothing() {
        let (start, _proxy, reloader, routers) = started().await;
        let before = routers.current();

        let moved = config("/svc => /$/inet/127.0.0.1/2;", 1);
        let err = reloader.apply(moved).expect_err("a listener moved");
        assert!(err.needs_restart(), "{err}");
        assert_eq!(err.reasons().len(), 1, "{err:?}");
        assert_eq!(reloader.config(), start);
        let after = routers.current();
        assert!(before.iter().zip(&after).all(|(b, a)| Arc::ptr_eq(b, a)));
    }
}
