//! The watch loops: one per watched service, one per datacenter's catalog.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch as chan;
use tokio::time::Instant;
use weft_naming::{Address, BoundName, Path, Resolution};

use super::api::{self, ServiceEntry};
use super::{lock, Inner, SvcKey, MIN_INTERVAL};
use crate::Backoff;

/// What a datacenter's catalog says: service names and their tags (last good answer), and
/// the latest error while there is no good answer yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Catalog {
    services: Option<Arc<HashMap<String, Vec<String>>>>,
    error: Option<Arc<str>>,
}

impl Catalog {
    /// Whether the catalog lists `service` (with `tag` among its tags, when given); `None`
    /// before the first good answer.
    fn knows(&self, service: &str, tag: Option<&str>) -> Option<bool> {
        let services = self.services.as_ref()?;
        Some(services.get(service).is_some_and(|tags| match tag {
            Some(t) => tags.iter().any(|x| x == t),
            None => true,
        }))
    }
}

/// One query in flight, after its delay.
type Pending<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// A good answer to a health query.
struct HealthAnswer {
    index: u64,
    entries: Vec<ServiceEntry>,
    authority: Option<String>,
}

/// The last good health answer, as addresses.
struct Health {
    /// Consul listed at least one instance (healthy or not): the service exists.
    listed: bool,
    addrs: Vec<Address>,
}

/// Keeps `tx` up to date with the healthy instances of `key` until nobody watches it.
pub(super) async fn service(
    inner: Arc<Inner>,
    key: SvcKey,
    id: Path,
    tx: chan::Sender<Resolution>,
) {
    let _watching = inner.status.watching();
    let mut catalog = subscribe_catalog(&inner, &key.dc);
    let mut catalog_alive = true;
    let mut backoff = Backoff::new(inner.config.backoff.min, inner.config.backoff.max);
    let mut index = 0;
    let mut health: Option<Health> = None;
    let mut error: Option<Arc<str>> = None;
    let mut query = health_query(inner.clone(), key.clone(), 0, Instant::now());
    loop {
        tokio::select! {
            answer = &mut query => {
                let started = Instant::now();
                let wait = match answer {
                    Ok(a) => {
                        let settings = api::Settings {
                            health_statuses: &inner.config.health_statuses,
                            prefer_service_address: inner.config.prefer_service_address,
                            weights: &inner.config.weights,
                            authority: a.authority.as_deref(),
                        };
                        let (addrs, bad) = api::addresses(&a.entries, &settings);
                        if bad > 0 {
                            let msg = format!(
                                "{id}: skipped {bad} instance(s) whose address is not an IP or \
                                 whose port is not in 1..=65535"
                            );
                            tracing::warn!(%id, bad, "consul: skipped instances");
                            inner.status.failed(msg);
                        }
                        inner.status.updated();
                        backoff.reset();
                        health = Some(Health { listed: !a.entries.is_empty(), addrs });
                        error = None;
                        index = api::next_index(index, a.index);
                        started + MIN_INTERVAL
                    }
                    Err(e) => {
                        tracing::warn!(%id, error = %e, keeping_last_good = health.is_some(), "consul query failed");
                        inner.status.failed(&e);
                        error = Some(e.into());
                        // The next query does not block, so the namer learns as soon as the
                        // agent answers again: one blocking on an unchanged index would say
                        // nothing (and the state stay stale) until `wait` ran out.
                        index = 0;
                        started + backoff.next_wait()
                    }
                };
                publish(&tx, &id, &key, health.as_ref(), &catalog.borrow(), error.as_ref());
                query = health_query(inner.clone(), key.clone(), index, wait);
            }
            changed = catalog.changed(), if catalog_alive => {
                catalog_alive = changed.is_ok();
                publish(&tx, &id, &key, health.as_ref(), &catalog.borrow(), error.as_ref());
            }
            () = tx.closed() => {
                let mut services = lock(&inner.services);
                // A lookup subscribes while holding the lock, so this check cannot race with it.
                if tx.receiver_count() == 0 {
                    services.remove(&key);
                    return;
                }
            }
        }
    }
}

/// Sends the resolution that the last health answer and the catalog make, if it changed.
fn publish(
    tx: &chan::Sender<Resolution>,
    id: &Path,
    key: &SvcKey,
    health: Option<&Health>,
    catalog: &Catalog,
    error: Option<&Arc<str>>,
) {
    let r = match health {
        Some(h) if h.listed => Resolution::Bound(BoundName::new(id.clone(), h.addrs.clone())),
        Some(_) => match catalog.knows(&key.service, key.tag.as_deref()) {
            Some(true) => Resolution::Bound(BoundName::new(id.clone(), Vec::new())),
            Some(false) => Resolution::Neg,
            None => match &catalog.error {
                Some(e) => Resolution::Failed(e.clone()),
                None => Resolution::Pending,
            },
        },
        None => match error {
            Some(e) => Resolution::Failed(e.clone()),
            None => Resolution::Pending,
        },
    };
    tx.send_if_modified(|cur| {
        let changed = *cur != r;
        if changed {
            *cur = r;
        }
        changed
    });
}

/// The health query of `key` at `index`, started at `at`.
fn health_query(inner: Arc<Inner>, key: SvcKey, index: u64, at: Instant) -> Pending<HealthAnswer> {
    Box::pin(async move {
        tokio::time::sleep_until(at).await;
        let authority = inner.authority(&key).await?;
        let path = api::health_path(
            &key.service,
            key.dc.as_deref(),
            key.tag.as_deref(),
            inner.config.consistency_mode,
            index,
            inner.config.wait,
        );
        let resp = inner.get(&path, inner.blocking_timeout()).await?;
        let got = api::index_of(&resp.headers)
            .ok_or_else(|| format!("GET {path}: no X-Consul-Index header"))?;
        let entries = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("GET {path}: malformed answer: {e}"))?;
        Ok(HealthAnswer {
            index: got,
            entries,
            authority,
        })
    })
}

/// A receiver of `dc`'s catalog, starting its watch if nobody watches it yet.
fn subscribe_catalog(inner: &Arc<Inner>, dc: &Option<Box<str>>) -> chan::Receiver<Catalog> {
    let mut catalogs = lock(&inner.catalogs);
    if let Some(tx) = catalogs.get(dc) {
        return tx.subscribe();
    }
    let (tx, rx) = chan::channel(Catalog::default());
    catalogs.insert(dc.clone(), tx.clone());
    tokio::spawn(catalog(inner.clone(), dc.clone(), tx));
    rx
}

/// Keeps `tx` up to date with `dc`'s catalog until no service watch needs it.
async fn catalog(inner: Arc<Inner>, dc: Option<Box<str>>, tx: chan::Sender<Catalog>) {
    let mut backoff = Backoff::new(inner.config.backoff.min, inner.config.backoff.max);
    let mut index = 0;
    let mut query = catalog_query(inner.clone(), dc.clone(), 0, Instant::now());
    loop {
        tokio::select! {
            answer = &mut query => {
                let started = Instant::now();
                let wait = match answer {
                    Ok((got, services)) => {
                        inner.status.updated();
                        backoff.reset();
                        index = api::next_index(index, got);
                        let services: HashMap<String, Vec<String>> = services
                            .into_iter()
                            .map(|(name, tags)| (name, tags.unwrap_or_default()))
                            .collect();
                        tx.send_if_modified(|cur| {
                            let changed = cur.error.is_some()
                                || cur.services.as_deref() != Some(&services);
                            if changed {
                                *cur = Catalog { services: Some(Arc::new(services)), error: None };
                            }
                            changed
                        });
                        started + MIN_INTERVAL
                    }
                    Err(e) => {
                        tracing::warn!(dc = dc.as_deref().unwrap_or(".local"), error = %e, "consul catalog query failed");
                        inner.status.failed(&e);
                        // Not blocking next time, as for the health query.
                        index = 0;
                        // With a good answer in hand, the error changes nothing for lookups.
                        tx.send_if_modified(|cur| {
                            let changed = cur.services.is_none();
                            if changed {
                                cur.error = Some(e.into());
                            }
                            changed
                        });
                        started + backoff.next_wait()
                    }
                };
                query = catalog_query(inner.clone(), dc.clone(), index, wait);
            }
            () = tx.closed() => {
                let mut catalogs = lock(&inner.catalogs);
                if tx.receiver_count() == 0 {
                    catalogs.remove(&dc);
                    return;
                }
            }
        }
    }
}

/// The catalog query of `dc` at `index`, started at `at`.
fn catalog_query(
    inner: Arc<Inner>,
    dc: Option<Box<str>>,
    index: u64,
    at: Instant,
) -> Pending<(u64, api::CatalogServices)> {
    Box::pin(async move {
        tokio::time::sleep_until(at).await;
        let path = api::catalog_path(
            dc.as_deref(),
            inner.config.consistency_mode,
            index,
            inner.config.wait,
        );
        let resp = inner.get(&path, inner.blocking_timeout()).await?;
        let got = api::index_of(&resp.headers)
            .ok_or_else(|| format!("GET {path}: no X-Consul-Index header"))?;
        let services = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("GET {path}: malformed answer: {e}"))?;
        Ok((got, services))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_tells_unknown_services_and_tags() {
        let mut c = Catalog::default();
        assert_eq!(c.knows("web", None), None);
        let services = HashMap::from([("web".to_owned(), vec!["v1".to_owned()])]);
        c.services = Some(Arc::new(services));
        assert_eq!(c.knows("web", None), Some(true));
        assert_eq!(c.knows("web", Some("v1")), Some(true));
        assert_eq!(c.knows("web", Some("v2")), Some(false));
        assert_eq!(c.knows("db", None), Some(false));
    }
}
