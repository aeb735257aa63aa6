//! One logical service (a name the identifier produced) and everything a router keeps for
//! it, found with one lookup per request: its binding under the router's dtab, its retry
//! budget, its per-route metrics, and the bound client its last request went to.

use std::sync::{Arc, Mutex, PoisonError};

use tower::retry::budget::TpsBudget;
use weft_config::RetryBudget;
use weft_naming::{Binding, BoundTree, Path};
use weft_telemetry::{RouterMetrics, ServiceMetrics};

use crate::endpoint::Balancer;

/// A logical service of one router.
pub(crate) struct Service {
    /// Its logical name, e.g. `/svc/books`.
    pub(crate) name: Path,
    /// Its binding under the router's own dtab (requests with their own dtab bind apart).
    pub(crate) binding: Binding,
    /// Retries of its requests, shared by all of them.
    pub(crate) budget: TpsBudget,
    /// The `service` label of its metrics: its name, or `[overflow]` past the bound.
    label: Box<str>,
    metrics: RouterMetrics,
    /// Metrics handles by route name (few: the profile's routes and `[default]`; a list, so
    /// a lookup borrows the route name).
    routes: Mutex<Vec<(Box<str>, Arc<ServiceMetrics>)>>,
    /// The bound tree of the last request and its bound client, when the tree was a single
    /// bound name: while the binding still holds that tree, the next request takes that
    /// client without a lookup.
    last: Mutex<Option<(Arc<BoundTree>, Arc<Balancer>)>>,
}

impl Service {
    /// The service `name` bound by `binding`, with a retry budget as `budget` says and its
    /// metrics under the label `label`.
    pub(crate) fn new(
        name: Path,
        binding: Binding,
        budget: &RetryBudget,
        label: Box<str>,
        metrics: RouterMetrics,
    ) -> Service {
        Service {
            name,
            binding,
            budget: TpsBudget::new(
                budget.ttl,
                budget.min_retries_per_sec,
                budget.percent_can_retry as f32,
            ),
            label,
            metrics,
            routes: Mutex::new(Vec::new()),
            last: Mutex::new(None),
        }
    }

    /// The metrics of one route of this service (made on first use).
    pub(crate) fn route_metrics(&self, route: &str) -> Arc<ServiceMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, m)) = routes.iter().find(|(r, _)| &**r == route) {
            return m.clone();
        }
        let m = Arc::new(self.metrics.service(&self.label, route));
        routes.push((route.into(), m.clone()));
        m
    }

    /// The bound client of the last request, if `tree` is still the tree it was bound by.
    pub(crate) fn last_client(&self, tree: &Arc<BoundTree>) -> Option<Arc<Balancer>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((t, b)) if Arc::ptr_eq(t, tree) => Some(b.clone()),
            _ => None,
        }
    }

    /// Remembers the bound client that `tree`, a single bound name, binds to.
    pub(crate) fn remember(&self, tree: Arc<BoundTree>, client: Arc<Balancer>) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((tree, client));
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
