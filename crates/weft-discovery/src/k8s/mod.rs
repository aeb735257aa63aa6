//! The `k8s` namer (Linkerd 1's `io.l5d.k8s`, from EndpointSlices) and the per-node
//! transformers [`daemonset`] and [`localnode`].
//!
//! Names are `/<namespace>/<port>/<service>` (with a bare label key as `labelSelector`,
//! Linkerd 1's `/<namespace>/<port>/<service>/<label value>`). One watch runs per
//! (namespace, service, label value): the service's EndpointSlices (label
//! `kubernetes.io/service-name=<service>`), through kube-rs's
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
/// - **`labelSelector`**: a selector (`app=web,tier!=cache`) narrows every watch to the
///   slices that also match it. A bare label key (`version`) is Linkerd 1's form instead:
///   names then take a fourth label, the key's value (`/<namespace>/<port>/<service>/v2`
///   watches the slices labelled `version=v2`; the EndpointSlice controller copies the
///   Service's labels onto its slices), and a name without it is Neg.
/// - **Results**: a service with no EndpointSlice at all is [`Resolution::Neg`] (Linkerd 1
///   gave Neg for a missing service); one with slices but no ready endpoint on the port is
///   [`Resolution::Bound`] with an empty set (the API lists ports per slice, so a port that no
///   slice lists looks the same). Fewer than three labels, or a namespace or service that
///   is not a DNS name, is Neg. The bound id is `<prefix>/<namespace>/<port>/<service>`
///   (and `/<label value>`).
/// - **Failures**: a failed list or watch, a malformed event (wrong JSON types, a port out
///   of range, an address that is not an IP), a list response or a single watch event over
///   16 MiB (the watch is then abandoned and the slices listed again), or a list that takes
///   longer than 30 s keep the last good slices, count an error on [`Namer::status`] and
///   retry after the configured [`Backoff`]; with nothing good yet the name is
///   [`Resolution::Failed`].
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
    labels: LabelFilter,
    backoff: DiscoveryBackoff,
    /// [`LIST_TIMEOUT`], shorter in tests.
    list_timeout: Duration,
    /// [`client::MAX_BODY`], smaller in tests: the cap on a list response and on each watch
    /// event.
    body_limit: usize,
    status: NamerStatus,
    services: Mutex<HashMap<ServiceKey, watch::Sender<ServiceState>>>,
}

/// A namespace, a service name, and with [`LabelFilter::Key`] the label's value.
type ServiceKey = (Box<str>, Box<str>, Option<Box<str>>);

/// What `labelSelector` adds to each watch's label selector.
#[derive(Debug, PartialEq)]
enum LabelFilter {
    None,
    /// A label selector, added as it is.
    Selector(String),
    /// Linkerd 1's label key: its value is the name's fourth label.
    Key(String),
}

impl LabelFilter {
    fn new(selector: Option<&str>) -> LabelFilter {
        match selector.map(str::trim) {
            None | Some("") => LabelFilter::None,
            Some(s) if label_key(s) => LabelFilter::Key(s.to_owned()),
            Some(s) => LabelFilter::Selector(s.to_owned()),
        }
    }
}

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
                labels: LabelFilter::new(config.label_selector.as_deref()),
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
        let value = match &self.shared.labels {
            LabelFilter::Key(_) => match label(3) {
                Some(v) if label_value(v) => Some(v),
                _ => return fixed(Resolution::Neg),
            },
            _ => None,
        };
        let id = self
            .shared
            .prefix
            .concat(&Path::from_labels([ns, port, svc].into_iter().chain(value)));
        let port = PortSel::parse(port);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "the k8s namer needs a tokio runtime".into(),
            ));
        };
        let mut service = self
            .shared
            .service(&runtime, (ns.into(), svc.into(), value.map(Into::into)));
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
        key: ServiceKey,
    ) -> watch::Receiver<ServiceState> {
        let mut services = lock(&self.services);
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
            .get_or_try_init(|| client::build(&self.source, self.body_limit, &self.status));
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
    let mut what = format!("EndpointSlices of {}/{}", key.0, key.1);
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
    match (&shared.labels, &key.2) {
        (LabelFilter::Selector(extra), _) => {
            selector.push(',');
            selector.push_str(extra);
        }
        (LabelFilter::Key(k), Some(v)) => {
            selector.push_str(&format!(",{k}={v}"));
            what.push_str(&format!(" labelled {k}={v}"));
        }
        _ => {}
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
                if is_gone(&e) || client::is_event_too_large(&e) {
                    // kube's watcher lists again after a 410 ERROR event, but retries the
                    // same version after a 410 *response* to the watch request: start over.
                    // After an oversized event, watching again from the same version would
                    // only be sent the same event: list again instead.
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

/// A label key alone (`version`, `example.com/tier`): `[prefix/]name`, the name at most 63
/// letters, digits, `-`, `_`, `.`, the prefix a DNS subdomain. Anything else in
/// `labelSelector` (an operator, a comma) makes it a selector.
fn label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(dns_name) && label_value(name)
}

/// A label value usable in a selector: 1 to 63 letters, digits, `-`, `_`, `.`, starting and
/// ending with a letter or digit (the API's syntax; an empty value cannot be a path label).
fn label_value(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    s.len() <= 63
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

    /// A CA, and a server certificate it signed for the IP address 127.0.0.1: the CA's PEM
    /// and the server's rustls config.
    fn api_server_tls() -> (String, Arc<rustls::ServerConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        (ca_cert.pem(), Arc::new(config))
    }

    /// A kubeconfig file in `dir`, as `kubectl config view --raw` writes one: the cluster at
    /// `server` trusted through `ca_pem` (inline, base64), and a user with a bearer `token`.
    fn kubeconfig(dir: &std::path::Path, server: &str, ca_pem: &str, token: &str) -> K8sNamer {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    \
             server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: weft\n  \
             user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: weft\ncurrent-context: fake\n"
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, yaml).unwrap();
        let config = K8sConfig {
            api: K8sApi {
                kubeconfig: Some(path),
                ..K8sApi::default()
            },
            label_selector: None,
            backoff: DiscoveryBackoff {
                min: Duration::from_millis(20),
                max: Duration::from_millis(50),
            },
        };
        K8sNamer::new(&config, &Path::read("/#/k8s").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_kubeconfig_with_a_ca_and_a_token_watches_over_tls() {
        let (ca, tls) = api_server_tls();
        let fake = FakeKube::start_tls(tls).await;
        fake.require_token(Some("s3cret-token"));
        let one = [("10.0.0.1", true, false, "n1")];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &one),
        );
        let dir = tempfile::tempdir().unwrap();
        let namer = kubeconfig(dir.path(), &fake.url(), &ca, "s3cret-token");
        let status = namer.status().unwrap();
        assert!(status.snapshot().backend.starts_with("kubeconfig "));
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let wait = Duration::from_secs(20);
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 1));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
        // A change arrives through the watch, over the same TLS and token.
        let two = [
            ("10.0.0.1", true, false, "n1"),
            ("10.0.0.2", true, false, "n1"),
        ];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &two),
        );
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 2));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
        assert!(fake.requests().iter().any(|r| r.contains("watch=true")));
        assert_eq!(fake.unauthorized(), 0);
        assert_eq!(status.state(), weft_naming::NamerState::Ok);
        assert_eq!(status.snapshot().errors, 0);
    }

    #[tokio::test]
    async fn a_wrong_token_or_an_untrusted_server_is_an_error_and_counted() {
        let (ca, tls) = api_server_tls();
        let fake = FakeKube::start_tls(tls).await;
        fake.require_token(Some("s3cret-token"));
        let one = [("10.0.0.1", true, false, "n1")];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &one),
        );
        let dir = tempfile::tempdir().unwrap();
        let wait = Duration::from_secs(20);

        let namer = kubeconfig(dir.path(), &fake.url(), &ca, "wrong-token");
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let failed = rx.wait_for(|r| matches!(r, Resolution::Failed(_)));
        let failed = tokio::time::timeout(wait, failed)
            .await
            .unwrap()
            .unwrap()
            .clone();
        let text = format!("{failed:?}");
        assert!(
            text.contains("401") || text.contains("Unauthorized"),
            "{text}"
        );
        assert_eq!(status.state(), weft_naming::NamerState::Error);
        assert!(status.snapshot().errors >= 1);
        assert!(fake.unauthorized() >= 1);

        // The right token, but the server's certificate is not from the CA the kubeconfig
        // trusts: no request gets through.
        let (other_ca, _) = api_server_tls();
        let before = fake.requests().len();
        let namer = kubeconfig(dir.path(), &fake.url(), &other_ca, "s3cret-token");
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let failed = rx.wait_for(|r| matches!(r, Resolution::Failed(_)));
        tokio::time::timeout(wait, failed).await.unwrap().unwrap();
        assert_eq!(status.state(), weft_naming::NamerState::Error);
        assert!(status.snapshot().errors >= 1);
        assert_eq!(
            fake.requests().len(),
            before,
            "a request reached the untrusted server"
        );
    }

    #[test]
    fn label_selector_a_bare_key_is_linkerd_1s_form() {
        use LabelFilter::{Key, Selector};
        assert_eq!(LabelFilter::new(None), LabelFilter::None);
        assert_eq!(LabelFilter::new(Some(" ")), LabelFilter::None);
        assert_eq!(LabelFilter::new(Some("version")), Key("version".into()));
        assert_eq!(
            LabelFilter::new(Some("example.com/tier")),
            Key("example.com/tier".into())
        );
        for selector in [
            "app=web",
            "app!=web",
            "app in (a,b)",
            "a,b",
            "!canary",
            "-x",
        ] {
            assert_eq!(
                LabelFilter::new(Some(selector)),
                Selector(selector.into()),
                "{selector}"
            );
        }
        assert!(label_value("v1.2_b-c") && !label_value("") && !label_value("-v"));
        assert!(!label_value(&"a".repeat(64)));
    }

    /// `labelSelector: version`: `/<ns>/<port>/<svc>/<version>` binds the service's slices
    /// labelled with that version, as Linkerd 1's `io.l5d.k8s` did.
    #[tokio::test]
    async fn a_label_key_takes_its_value_from_a_fourth_label() {
        let fake = FakeKube::start().await;
        let versioned = |name: &str, version: &str, ip: &str| {
            let mut slice = endpoint_slice(name, "web", "http", 8080, &[(ip, true, false, "n1")]);
            slice["metadata"]["labels"]["version"] = version.into();
            slice
        };
        fake.apply("default", versioned("web-v1", "v1", "10.0.0.1"));
        fake.apply("default", versioned("web-v2", "v2", "10.0.0.2"));
        let config = K8sConfig {
            api: K8sApi {
                url: Some(fake.url()),
                ..K8sApi::default()
            },
            label_selector: Some("version".into()),
            backoff: DiscoveryBackoff::default(),
        };
        let namer = K8sNamer::new(&config, &Path::read("/#/k8s").unwrap()).unwrap();
        let wait = Duration::from_secs(20);
        for (version, ip) in [("v1", "10.0.0.1"), ("v2", "10.0.0.2")] {
            let mut rx =
                namer.lookup(&Path::read(&format!("/default/http/web/{version}")).unwrap());
            let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(_)));
            let bound = tokio::time::timeout(wait, bound)
                .await
                .unwrap()
                .unwrap()
                .clone();
            let Resolution::Bound(b) = bound else {
                unreachable!()
            };
            assert_eq!(
                b.id,
                Path::read(&format!("/#/k8s/default/http/web/{version}")).unwrap()
            );
            let ips: Vec<String> = b.addrs.iter().map(|a| a.addr.ip().to_string()).collect();
            assert_eq!(ips, [ip], "{version}");
        }
        // A version no slice carries is Neg; without the fourth label the name is Neg too.
        let mut rx = namer.lookup(&Path::read("/default/http/web/v3").unwrap());
        let neg = rx.wait_for(|r| *r == Resolution::Neg);
        tokio::time::timeout(wait, neg).await.unwrap().unwrap();
        assert_eq!(
            *namer
                .lookup(&Path::read("/default/http/web").unwrap())
                .borrow(),
            Resolution::Neg
        );
        assert!(fake.requests().iter().any(|r| r
            .contains("labelSelector=kubernetes.io%2Fservice-name%3Dweb%2Cversion%3Dv1")
            || r.contains("labelSelector=kubernetes.io/service-name=web,version=v1")));
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
    async fn an_oversized_watch_event_is_refused_and_the_slices_listed_again() {
        let fake = FakeKube::start().await;
        let ready = [("10.0.0.1", true, false, "n1")];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &ready),
        );
        let namer = test_namer(&fake, LIST_TIMEOUT, 4096);
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let wait = Duration::from_secs(20);
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 1));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
        let live = async {
            while fake.watches() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(wait, live).await.unwrap();
        let (errors, lists) = (status.snapshot().errors, fake.lists());

        // A MODIFIED event of the same slice with 200 endpoints: a well-formed event, one
        // line of about 20 KiB, over the 4 KiB cap.
        let eps: Vec<String> = (0..200).map(|i| format!("10.1.0.{i}")).collect();
        let eps: Vec<_> = eps
            .iter()
            .map(|ip| (ip.as_str(), true, false, "n1"))
            .collect();
        let mut big = endpoint_slice("web-a", "web", "http", 8080, &eps);
        big["metadata"]["namespace"] = "default".into();
        big["metadata"]["resourceVersion"] = "99".into();
        let event = serde_json::json!({"type": "MODIFIED", "object": big}).to_string();
        assert!(event.len() > 4096);
        fake.send_raw(&event);

        // Refused and counted; the namer lists again (the store still holds the small
        // slice) and is ok, and the name never left the last good set.
        let relisted = async {
            while !(fake.lists() > lists
                && status.snapshot().errors > errors
                && status.state() == weft_naming::NamerState::Ok)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(wait, relisted).await.unwrap();
        assert!(
            !rx.has_changed().unwrap(),
            "the oversized event reached the name: {:?}",
            *rx.borrow()
        );
        assert!(matches!(&*rx.borrow(), Resolution::Bound(b) if b.addrs.len() == 1));
        // The watch goes on: a later change arrives.
        let two = [
            ("10.0.0.1", true, false, "n1"),
            ("10.0.0.2", true, false, "n1"),
        ];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &two),
        );
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 2));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
    }

    /// kube's watcher resumes a watch without an event: the namer must still learn that the
    /// API server is back, not stay stale until the service changes.
    #[tokio::test]
    async fn a_quiet_service_is_ok_again_once_the_api_server_is_back() {
        let fake = FakeKube::start().await;
        let ready = [("10.0.0.1", true, false, "n1")];
        fake.apply(
            "default",
            endpoint_slice("web-a", "web", "http", 8080, &ready),
        );
        let namer = test_namer(&fake, LIST_TIMEOUT, client::MAX_BODY);
        let status = namer.status().unwrap();
        let mut rx = namer.lookup(&Path::read("/default/http/web").unwrap());
        let wait = Duration::from_secs(20);
        let bound = rx.wait_for(|r| matches!(r, Resolution::Bound(b) if b.addrs.len() == 1));
        tokio::time::timeout(wait, bound).await.unwrap().unwrap();
        let until = |state| {
            let status = status.clone();
            async move {
                while status.state() != state {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        tokio::time::timeout(wait, until(weft_naming::NamerState::Ok))
            .await
            .unwrap();
        fake.stop();
        tokio::time::timeout(wait, until(weft_naming::NamerState::Stale))
            .await
            .unwrap();
        let updates = status.snapshot().updates;
        fake.restart().await;
        tokio::time::timeout(wait, until(weft_naming::NamerState::Ok))
            .await
            .unwrap();
        assert_eq!(status.snapshot().updates, updates, "no change was needed");
        assert!(matches!(&*rx.borrow(), Resolution::Bound(b) if b.addrs.len() == 1));
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
