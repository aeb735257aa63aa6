//! The `k8s` namer (Linkerd 1's `io.l5d.k8s`, from EndpointSlices) and the per-node
//! transformers [`daemonset`] and [`localnode`].
//!
//! Names are `/<namespace>/<port>/<service>`. One watch runs per (namespace, service): the
//! service's EndpointSlices (label `kubernetes.io/service-name=<service>`), through kube-rs's
//! [`watcher()`], which lists, then watches from the list's `resourceVersion` with bookmarks,
//! and lists again when the API server answers 410 Gone (the API's "efficient detection of
//! changes"). Every port and every lookup of that service shares it.

mod client;
mod daemonset;
mod endpoints;
mod localnode;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher, Event};
use tokio::sync::watch;
use weft_config::{DiscoveryBackoff, K8sConfig};
use weft_naming::{BoundName, Namer, NamerStatus, Path, Resolution};

use crate::{Backoff, DiscoveryError};
use client::{client_source, ClientSource};
use endpoints::{PortSel, Slices};

pub use daemonset::daemonset;
pub use localnode::localnode;

/// How long a list may take before the namer gives up on it, counts an error and starts
/// over: a backend that accepts and never answers. A watch has no such limit here: kube's
/// watcher asks the API server to end each watch after 290 s and reconnects itself after
/// 295 s of silence.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// `kind: k8s` (alias `io.l5d.k8s`): names `/<namespace>/<port>/<service>` bound to the ready
/// endpoints of the service's EndpointSlices.
///
/// - **Port**: a name matches each slice's port of that `name`, resolved per slice (slices of
///   one service may carry different numbers for one name); a number matches the slice port
///   with that `port` number, i.e. the endpoints' (target) port, not the Service's port.
/// - **Endpoints**: addresses of endpoints whose `conditions.ready` is true or absent and that
///   are not `terminating`; the address meta carries `nodeName` as the node and `hostname`
///   and `zone` as labels. Requests in flight to an endpoint that goes away finish: the
///   balancer only stops picking it.
/// - **Results**: a service with no EndpointSlice at all is [`Resolution::Neg`] (Linkerd 1
///   gave Neg for a missing service); one with slices but no ready endpoint on the port is
///   [`Resolution::Bound`] with an empty set (the API lists ports per slice, so a port that no
///   slice lists looks the same). Fewer than three labels, or a namespace or service that
///   is not a DNS name, is Neg. The bound id is `<prefix>/<namespace>/<port>/<service>`.
/// - **Failures**: a failed list or watch, a malformed event (wrong JSON types, a port out
///   of range, an address that is not an IP), or a list that takes longer than 30 s keep the
///   last good slices, count an error on [`Namer::status`] and retry after the configured
///   [`Backoff`]; with nothing good yet the name is [`Resolution::Failed`].
///
/// The Kubernetes client is created on the first lookup, inside the runtime.
#[derive(Clone)]
pub struct K8sNamer {
    shared: Arc<Shared>,
}

struct Shared {
    prefix: Path,
    source: ClientSource,
    client: tokio::sync::OnceCell<kube::Client>,
    label_selector: Option<String>,
    backoff: DiscoveryBackoff,
    /// [`LIST_TIMEOUT`], shorter in tests.
    list_timeout: Duration,
    /// [`client::MAX_BODY`], smaller in tests.
    body_limit: usize,
    status: NamerStatus,
    services: Mutex<HashMap<ServiceKey, watch::Sender<ServiceState>>>,
}

/// A namespace and a service name.
type ServiceKey = (Box<str>, Box<str>);

/// What is known of one service's EndpointSlices.
#[derive(Clone, Debug, PartialEq)]
enum ServiceState {
    Pending,
    Failed(Arc<str>),
    Known(Arc<Slices>),
}

impl K8sNamer {
    /// Builds the namer at `prefix`: finds the API server's configuration, from `url`, else
    /// the `kubeconfig` file (and `context`), else the in-cluster service account, else
    /// `$KUBECONFIG` / `~/.kube/config`. Nothing is contacted until the first lookup.
    ///
    /// # Errors
    /// A `url` that is not an absolute `http`/`https` URL, a kubeconfig that cannot be read,
    /// or no configuration found at all (the message names each place tried).
    pub fn new(config: &K8sConfig, prefix: &Path) -> Result<K8sNamer, DiscoveryError> {
        let (source, backend) =
            client_source(&config.api).map_err(|m| DiscoveryError::new(prefix, m))?;
        Ok(K8sNamer {
            shared: Arc::new(Shared {
                prefix: prefix.clone(),
                source,
                client: tokio::sync::OnceCell::new(),
                label_selector: config.label_selector.clone(),
                backoff: config.backoff,
                list_timeout: LIST_TIMEOUT,
                body_limit: client::MAX_BODY,
                status: NamerStatus::new("k8s", backend),
                services: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Namer for K8sNamer {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let label = |i| residual.label(i).and_then(|l| std::str::from_utf8(l).ok());
        let (Some(ns), Some(port), Some(svc)) = (label(0), label(1), label(2)) else {
            return fixed(Resolution::Neg);
        };
        if !dns_name(ns) || !dns_name(svc) || port.is_empty() || port.len() > 63 {
            return fixed(Resolution::Neg);
        }
        let id = self
            .shared
            .prefix
            .concat(&Path::from_labels([ns, port, svc]));
        let port = PortSel::parse(port);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "the k8s namer needs a tokio runtime".into(),
            ));
        };
        let mut service = self.shared.service(&runtime, ns, svc);
        let first = resolution(&service.borrow_and_update(), &id, &port);
        let (tx, rx) = watch::channel(first);
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    changed = service.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
                let next = resolution(&service.borrow_and_update(), &id, &port);
                tx.send_if_modified(|cur| replace_if_changed(cur, next));
            }
        });
        rx
    }

    fn status(&self) -> Option<NamerStatus> {
        Some(self.shared.status.clone())
    }
}

impl Shared {
    /// The service's shared watch, started if nobody watches it yet.
    fn service(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        ns: &str,
        svc: &str,
    ) -> watch::Receiver<ServiceState> {
        let mut services = lock(&self.services);
        let key: ServiceKey = (ns.into(), svc.into());
        if let Some(tx) = services.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(ServiceState::Pending);
        services.insert(key.clone(), tx.clone());
        runtime.spawn(watch_service(self.clone(), key, tx));
        rx
    }

    async fn client(&self) -> Result<kube::Client, String> {
        let client = self
            .client
            .get_or_try_init(|| client::build(&self.source, self.body_limit));
        client.await.cloned()
    }

    /// Removes the service's entry if nobody watches it; true when it did.
    fn unwatched(&self, key: &ServiceKey, tx: &watch::Sender<ServiceState>) -> bool {
        let mut services = lock(&self.services);
        // A lookup subscribes while holding the lock, so this check cannot race with it.
        let gone = tx.receiver_count() == 0;
        if gone {
            services.remove(key);
        }
        gone
    }
}

/// The resolution of one port of a service, from what is known of its slices.
fn resolution(state: &ServiceState, id: &Path, port: &PortSel) -> Resolution {
    match state {
        ServiceState::Pending => Resolution::Pending,
        ServiceState::Failed(m) => Resolution::Failed(m.clone()),
        ServiceState::Known(slices) if slices.is_empty() => Resolution::Neg,
        ServiceState::Known(slices) => {
            let addrs = endpoints::addresses(slices.values(), port);
            Resolution::Bound(BoundName::new(id.clone(), addrs))
        }
    }
}

/// For [`crate::fuzz_support`]: one EndpointSlice (JSON) checked and converted as the watch
/// does, and the addresses it gives for the port label `port`.
pub(crate) fn slice_body(body: &[u8], port: &str) -> Result<Vec<weft_naming::Address>, String> {
    let slice: EndpointSlice =
        serde_json::from_slice(body).map_err(|e| format!("malformed EndpointSlice: {e}"))?;
    let slice = endpoints::parse(&slice)?;
    Ok(endpoints::addresses(
        std::iter::once(&slice),
        &PortSel::parse(port),
    ))
}

/// Keeps `tx` up to date with the EndpointSlices of one service until nobody watches it.
async fn watch_service(shared: Arc<Shared>, key: ServiceKey, tx: watch::Sender<ServiceState>) {
    let _watching = shared.status.watching();
    let mut backoff = Backoff::new(shared.backoff.min, shared.backoff.max);
    let what = format!("EndpointSlices of {}/{}", key.0, key.1);
    let client = loop {
        match shared.client().await {
            Ok(c) => break c,
            Err(e) => {
                fail(&shared, &tx, &what, &e);
                if !pause(&shared, &key, &tx, backoff.next_wait()).await {
                    return;
                }
            }
        }
    };
    let api = kube::Api::<EndpointSlice>::namespaced(client, &key.0);
    let mut selector = format!("kubernetes.io/service-name={}", key.1);
    if let Some(extra) = shared.label_selector.as_deref().filter(|s| !s.is_empty()) {
        selector.push(',');
        selector.push_str(extra);
    }
    let config = watcher::Config::default().labels(&selector);
    let mut stream = watcher(api.clone(), config.clone()).boxed();
    // The slices applied so far, and those of a list in progress.
    let mut slices = Slices::new();
    let mut listing: Option<Slices> = Some(Slices::new());
    loop {
        // Only a list is timed: a quiet watch may rightly say nothing for minutes.
        let limit = if listing.is_some() {
            shared.list_timeout
        } else {
            Duration::MAX
        };
        let next = tokio::select! {
            next = timeout(limit, stream.next()) => next,
            () = tx.closed() => {
                if shared.unwatched(&key, &tx) {
                    return;
                }
                continue;
            }
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) | Err(()) => {
                // The watcher never ends by itself; a timeout abandons a hung list.
                let e = format!("no answer within {}s", limit.as_secs());
                fail(&shared, &tx, &what, &e);
                stream = watcher(api.clone(), config.clone()).boxed();
                listing = Some(Slices::new());
                if !pause(&shared, &key, &tx, backoff.next_wait()).await {
                    return;
                }
                continue;
            }
        };
        match event {
            Ok(Event::Init) => listing = Some(Slices::new()),
            Ok(Event::InitApply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                match endpoints::parse(&s) {
                    Ok(slice) => {
                        listing.get_or_insert_with(Slices::new).insert(name, slice);
                    }
                    Err(e) => {
                        // Keep the last good version of that slice, if any.
                        fail(&shared, &tx, &what, &e);
                        if let Some(old) = slices.get(&name) {
                            listing
                                .get_or_insert_with(Slices::new)
                                .insert(name, old.clone());
                        }
                    }
                }
            }
            Ok(Event::InitDone) => {
                slices = listing.take().unwrap_or_default();
                publish(&shared, &tx, &slices, &mut backoff);
            }
            Ok(Event::Apply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                match endpoints::parse(&s) {
                    Ok(slice) => {
                        slices.insert(name, slice);
                        publish(&shared, &tx, &slices, &mut backoff);
                    }
                    Err(e) => fail(&shared, &tx, &what, &e),
                }
            }
            Ok(Event::Delete(s)) => {
                slices.remove(s.metadata.name.as_deref().unwrap_or_default());
                publish(&shared, &tx, &slices, &mut backoff);
            }
            Err(e) => {
                fail(&shared, &tx, &what, &e.to_string());
                if is_gone(&e) {
                    // kube's watcher lists again after a 410 ERROR event, but retries the
                    // same version after a 410 *response* to the watch request: start over.
                    stream = watcher(api.clone(), config.clone()).boxed();
                    listing = Some(Slices::new());
                }
                if !pause(&shared, &key, &tx, backoff.next_wait()).await {
                    return;
                }
            }
        }
    }
}

/// Whether the API server answered 410 Gone: the watch's version is compacted away and only
/// a new list can catch up (the API's "efficient detection of changes").
fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        watcher::Error::WatchError(s) => s.code == 410,
        _ => false,
    }
}

/// A good answer: the slices are published and the status is ok.
fn publish(
    shared: &Shared,
    tx: &watch::Sender<ServiceState>,
    slices: &Slices,
    backoff: &mut Backoff,
) {
    shared.status.updated();
    backoff.reset();
    let next = ServiceState::Known(Arc::new(slices.clone()));
    tx.send_if_modified(|cur| replace_if_changed(cur, next));
}

/// A failed exchange or a malformed object: counted; the slices stay as they were, or the
/// service is failed when nothing good is known yet.
fn fail(shared: &Shared, tx: &watch::Sender<ServiceState>, what: &str, error: &str) {
    let message = format!("{what}: {error}");
    tracing::warn!(namer = %shared.prefix, error = %message, "Kubernetes API request failed");
    shared.status.failed(&message);
    tx.send_if_modified(|cur| match cur {
        ServiceState::Known(_) => false,
        _ => replace_if_changed(cur, ServiceState::Failed(message.into())),
    });
}

/// Waits `wait`; false when nobody watches the service any more (its entry is removed).
async fn pause(
    shared: &Shared,
    key: &ServiceKey,
    tx: &watch::Sender<ServiceState>,
    wait: Duration,
) -> bool {
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            // Someone may have subscribed again meanwhile: then keep waiting out the backoff.
            () = tx.closed() => if shared.unwatched(key, tx) { return false },
        }
    }
}

/// A Kubernetes object name usable in a namespace or service label: a DNS subdomain
/// (lowercase letters, digits, `-` and `.`, at most 253 characters). Anything else cannot
/// name a service, and must not reach a label selector.
fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `fut`, given up after `limit` (`Duration::MAX`: never).
async fn timeout<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Result<T, ()> {
    if limit == Duration::MAX {
        return Ok(fut.await);
    }
    tokio::time::timeout(limit, fut).await.map_err(|_| ())
}

/// A receiver kept up to date with `f(first, second)` while it is held: a task forwards every
/// change of either input (Linkerd 1's transformers are live the same way, see
/// `weft_naming::Transformed`). Outside a tokio runtime the result is a one-off snapshot.
fn forward<F>(
    mut first: watch::Receiver<Resolution>,
    mut second: Option<watch::Receiver<Resolution>>,
    f: F,
) -> watch::Receiver<Resolution>
where
    F: Fn(&Resolution, Option<&Resolution>) -> Resolution + Send + 'static,
{
    let compute = move |a: &mut watch::Receiver<Resolution>,
                        b: &mut Option<watch::Receiver<Resolution>>| {
        let b = b.as_mut().map(|b| b.borrow_and_update().clone());
        f(&a.borrow_and_update(), b.as_ref())
    };
    let (tx, rx) = watch::channel(compute(&mut first, &mut second));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return rx;
    };
    runtime.spawn(async move {
        loop {
            let second_changed = async {
                match &mut second {
                    Some(s) => s.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = first.changed() => if changed.is_err() { return },
                changed = second_changed => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            let next = compute(&mut first, &mut second);
            tx.send_if_modified(|cur| replace_if_changed(cur, next));
        }
    });
    rx
}

/// Whether two addresses are in the same /24 (IPv4) or /64 (IPv6): Linkerd 1's test for
/// "on the same node" when pods do not share the node's network (each node's pods get one
/// such range from the CNI).
fn same_subnet(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (a, b) {
        (V4(a), V4(b)) => a.octets()[..3] == b.octets()[..3],
        (V6(a), V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

/// A receiver that always holds `r`.
fn fixed(r: Resolution) -> watch::Receiver<Resolution> {
    watch::channel(r).1
}

fn replace_if_changed<T: PartialEq>(cur: &mut T, new: T) -> bool {
    let changed = *cur != new;
    if changed {
        *cur = new;
    }
    changed
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single get, insert or remove: the map stays consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use weft_config::K8sApi;
    use weft_test::fake_k8s::{endpoint_slice, FakeKube};

    use super::*;

    fn test_namer(fake: &FakeKube, list_timeout: Duration, body_limit: usize) -> K8sNamer {
        let config = K8sConfig {
            api: K8sApi {
                url: Some(fake.url()),
                ..K8sApi::default()
            },
            label_selector: None,
            backoff: DiscoveryBackoff {
                min: Duration::from_millis(20),
                max: Duration::from_millis(50),
            },
        };
        let mut namer = K8sNamer::new(&config, &Path::read("/#/k8s").unwrap()).unwrap();
        let shared = Arc::get_mut(&mut namer.shared).unwrap();
        shared.list_timeout = list_timeout;
        shared.body_limit = body_limit;
        namer
    }

    #[tokio::test]
    async fn an_oversized_list_is_a_failed_list() {
        let fake = FakeKube::start().await;
        let ips: Vec<String> = (0..200)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let eps: Vec<_> = ips
            .iter()
            .map(|ip| (ip.as_str(), true, false, "n1"))
            .collect();
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &eps),
        );
        let namer = test_namer(&fake, LIST_TIMEOUT, 4096);
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let wait = Duration::from_secs(20);
        let failed = rx.wait_for(|r| matches!(r, Resolution::Failed(_)));
        tokio::time::timeout(wait, failed).await.unwrap().unwrap();
        assert!(status.snapshot().errors >= 1);
        // Small enough again: the retried list succeeds.
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &eps[..2]),
        );
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 2));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_list_that_never_answers_times_out_and_is_retried() {
        let fake = FakeKube::start().await;
        let ready = [("10.0.0.1", true, false, "n1")];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &ready),
        );
        fake.set_hang(true);
        let namer = test_namer(&fake, Duration::from_millis(200), client::MAX_BODY);
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let wait = Duration::from_secs(20);
        let failed = rx.wait_for(|r| matches!(r, Resolution::Failed(m) if m.contains("no answer")));
        tokio::time::timeout(wait, failed).await.unwrap().unwrap();
        assert!(status.snapshot().errors >= 1);
        fake.set_hang(false);
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 1));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
        assert_eq!(status.state(), weft_naming::NamerState::Ok);
        assert!(fake
            .requests()
            .iter()
            .any(|r| r.starts_with("(unanswered)")));
    }
}
