//! The `marathon` namer (Linkerd 1's `io.l5d.marathon`): names are Marathon app ids, the
//! endpoints are the apps' running tasks.
//!
//! One refresher serves the whole namer while any name is watched: it reads every app with
//! its tasks (`GET /v2/apps?embed=apps.tasks`, Marathon's REST API) and follows the event
//! stream (`GET /v2/events`, server-sent events) to read them again soon after a change.

mod api;
mod auth;
mod events;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use weft_config::{DiscoveryBackoff, MarathonConfig};
use weft_naming::{Address, AddressMeta, BoundName, Namer, NamerStatus, Path, Resolution};

use self::api::{Apps, TaskAddr};
use self::auth::Auth;
use self::events::{SseEvent, SseParser};
use crate::http::{tls_config, HttpClient};
use crate::{Backoff, DiscoveryError};

/// How long one exchange may take: the whole `/v2/apps` answer, the event stream's
/// response head, or the DC/OS login.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The path and query of the apps listing with their tasks embedded.
const APPS_PATH: &str = "/v2/apps?embed=apps.tasks";
/// The path of the event stream.
const EVENTS_PATH: &str = "/v2/events";
/// The shortest time between two reads of `/v2/apps` prompted by events: a burst of events
/// (a deployment of many tasks) costs one read.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long the name of a task's host may take to resolve.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Marathon events after which the apps are read again (Marathon's event bus documentation);
/// others (`api_post_event`, `framework_message_event`, ...) do not move tasks.
const RELEVANT_EVENTS: &[&str] = &[
    "status_update_event",
    "health_status_changed_event",
    "failed_health_check_event",
    "unhealthy_task_kill_event",
    "unhealthy_instance_kill_event",
    "deployment_success",
    "deployment_failed",
    "deployment_step_success",
    "app_terminated_event",
    "instance_changed_event",
    "instance_health_changed_event",
];

/// `kind: marathon`: the residual path is a Marathon app id, one label per segment
/// (`/#/marathon/products/web` is app `/products/web`; the whole residual is the id). The
/// bound id is the namer's prefix followed by those labels.
///
/// The endpoints of an app are its running tasks (Mesos state `TASK_RUNNING`, or no state in
/// older Marathons) at `host:ports[0]`, as in Linkerd 1; a task host that is a name is
/// resolved with the system resolver (the first address), and each address carries the host
/// as its node ([`AddressMeta::node`]). With `useHealthCheck`, only tasks whose health check
/// results are all alive count, and a task of an app with health checks needs at least one
/// result. An app that does not exist is [`Resolution::Neg`]; one with no such task is bound
/// with an empty set.
///
/// One refresher task serves every name: it starts with the first watched name and stops
/// when none is left. It reads `GET <uriPrefix>/v2/apps?embed=apps.tasks` every `ttl` and,
/// through the event stream `GET <uriPrefix>/v2/events`, within about 100 ms of a task or
/// health change. An event stream that ends prompts a read at once (so an outage shows
/// without waiting for `ttl`) and is reconnected with `backoff`, the `ttl` reads going on
/// meanwhile. A failed read (unreachable, no answer within 10 s, a status other than
/// 200, a body over 16 MiB or not of the documented shape) keeps every name's last good
/// answer, is counted on [`MarathonNamer::status`], and is retried with `backoff`; a name
/// with no good answer yet becomes [`Resolution::Failed`].
///
/// Credentials come from the environment, as in Linkerd 1. `DCOS_SERVICE_ACCOUNT_CREDENTIAL`
/// (a DC/OS service account: JSON with `uid`, `private_key` as PEM RSA and `login_endpoint`)
/// logs in to DC/OS IAM by POSTing `{"uid", "token"}` to `login_endpoint`, `token` being an
/// RS256 JWT of `{"uid", "exp"}` signed with the key, and sends the token it gets as
/// `Authorization: token=<token>`, logging in again after a 401 or 403. Otherwise
/// `MARATHON_HTTP_AUTH_CREDENTIAL` (base64 of `user:password`) is sent as
/// `Authorization: Basic`.
pub struct MarathonNamer {
    shared: Arc<Shared>,
}

struct Shared {
    prefix: Path,
    /// Marathon's API, at `host:port`.
    http: HttpClient,
    /// Prepended to every API path (Marathon behind a proxy, e.g. DC/OS's `/marathon`).
    uri_prefix: String,
    auth: Auth,
    /// The timeout of one read: the whole `/v2/apps` answer, or the event stream's head.
    timeout: Duration,
    use_health_check: bool,
    ttl: Duration,
    backoff: DiscoveryBackoff,
    status: NamerStatus,
    /// An event (or a name whose hosts are not resolved yet) asks for a read now.
    kick: Notify,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Watched app ids.
    names: HashMap<String, Watched>,
    refresher: Option<JoinHandle<()>>,
    /// Which refresher may publish: a stopped one may still be finishing a step.
    generation: u64,
    /// The last good listing, while the refresher runs.
    apps: Option<Arc<Apps>>,
    /// Task host names resolved at the last good read.
    hosts: HashMap<Box<str>, IpAddr>,
    /// The latest error, until a good read.
    error: Option<Arc<str>>,
}

struct Watched {
    tx: watch::Sender<Resolution>,
    id: Path,
    _guard: weft_naming::WatchGuard,
}

impl MarathonNamer {
    /// The namer at `prefix` for the Marathon of `config`, with credentials from the
    /// environment (see the type's documentation). Nothing is sent before a name is watched.
    ///
    /// # Errors
    /// `DCOS_SERVICE_ACCOUNT_CREDENTIAL` is not a usable service account (see the type),
    /// `MARATHON_HTTP_AUTH_CREDENTIAL` is not base64, a TLS file does not load, or the host is
    /// not a valid name.
    pub fn new(config: &MarathonConfig, prefix: &Path) -> Result<MarathonNamer, DiscoveryError> {
        let error = |e| DiscoveryError::new(prefix, e);
        // Built once: Marathon's client and the DC/OS login share it.
        let tls = config
            .tls
            .as_ref()
            .map(tls_config)
            .transpose()
            .map_err(error)?;
        let auth = Auth::from_env(|name| std::env::var(name).ok(), tls.clone()).map_err(error)?;
        MarathonNamer::build(config, prefix, auth, tls, REQUEST_TIMEOUT)
    }

    /// The namer with `auth` and a request `timeout`, for tests.
    #[cfg(test)]
    fn with_auth(
        config: &MarathonConfig,
        prefix: &Path,
        auth: Auth,
        timeout: Duration,
    ) -> Result<MarathonNamer, DiscoveryError> {
        let tls = config.tls.as_ref().map(tls_config).transpose();
        let tls = tls.map_err(|e| DiscoveryError::new(prefix, e))?;
        MarathonNamer::build(config, prefix, auth, tls, timeout)
    }

    fn build(
        config: &MarathonConfig,
        prefix: &Path,
        auth: Auth,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<MarathonNamer, DiscoveryError> {
        let name = config.tls.as_ref().and_then(|t| t.common_name.as_deref());
        let tls = tls.map(|t| (name.unwrap_or(&config.host), t));
        let http = HttpClient::with_tls_config(&config.host, config.port, tls)
            .map_err(|e| DiscoveryError::new(prefix, e))?;
        let backend = format!("{}{}", http.base(), config.uri_prefix);
        Ok(MarathonNamer {
            shared: Arc::new(Shared {
                prefix: prefix.clone(),
                status: NamerStatus::new("marathon", backend),
                http,
                uri_prefix: config.uri_prefix.clone(),
                auth,
                timeout,
                use_health_check: config.use_health_check,
                ttl: config.ttl,
                backoff: config.backoff,
                kick: Notify::new(),
                state: Mutex::new(State::default()),
            }),
        })
    }
}

impl Namer for MarathonNamer {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let Some(app) = app_id(residual) else {
            return fixed(Resolution::Neg);
        };
        let shared = &self.shared;
        let mut st = shared.lock();
        if let Some(w) = st.names.get(&app) {
            return w.tx.subscribe();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "the marathon namer needs a tokio runtime".into(),
            ));
        };
        let id = shared.prefix.concat(residual);
        let first = match (&st.apps, &st.error) {
            (Some(apps), _) => match resolution(&id, &app, apps, &st.hosts) {
                (r, Unresolved::No) => r,
                (_, Unresolved::Yes) => {
                    shared.kick.notify_one();
                    Resolution::Pending
                }
            },
            (None, Some(e)) => Resolution::Failed(e.clone()),
            (None, None) => Resolution::Pending,
        };
        let (tx, rx) = watch::channel(first);
        st.names.insert(
            app.clone(),
            Watched {
                tx: tx.clone(),
                id,
                _guard: shared.status.watching(),
            },
        );
        if st.refresher.is_none() {
            st.generation += 1;
            let generation = st.generation;
            st.refresher = Some(runtime.spawn(refresh(shared.clone(), generation)));
        }
        drop(st);
        runtime.spawn(unwatch(shared.clone(), app, tx));
        rx
    }

    fn status(&self) -> Option<NamerStatus> {
        Some(self.shared.status.clone())
    }
}

/// The app id of a residual path: `/products/web` for labels `products`, `web`; `None` for
/// an empty path or a label that is not UTF-8 (Marathon ids are ASCII).
fn app_id(residual: &Path) -> Option<String> {
    if residual.is_empty() {
        return None;
    }
    let mut id = String::new();
    for label in residual.labels() {
        id.push('/');
        id.push_str(std::str::from_utf8(label).ok()?);
    }
    Some(id)
}

/// A receiver that always holds `r`.
fn fixed(r: Resolution) -> watch::Receiver<Resolution> {
    watch::channel(r).1
}

/// Whether some task host of an app has no address yet.
#[derive(Debug, PartialEq, Eq)]
enum Unresolved {
    Yes,
    No,
}

/// The resolution of `app` in a listing; tasks whose host has no address are left out.
fn resolution(
    id: &Path,
    app: &str,
    apps: &Apps,
    hosts: &HashMap<Box<str>, IpAddr>,
) -> (Resolution, Unresolved) {
    let Some(tasks) = apps.get(app) else {
        return (Resolution::Neg, Unresolved::No);
    };
    let mut unresolved = Unresolved::No;
    let mut addrs: Vec<Address> = tasks
        .iter()
        .filter_map(|t| {
            let ip = t
                .host
                .parse::<IpAddr>()
                .ok()
                .or_else(|| hosts.get(&t.host).copied());
            if ip.is_none() {
                unresolved = Unresolved::Yes;
            }
            let meta = AddressMeta {
                node: Some(t.host.clone()),
                ..AddressMeta::default()
            };
            Some(Address::new(SocketAddr::new(ip?, t.port)).with_meta(meta))
        })
        .collect();
    addrs.sort_by_key(|a| a.addr);
    addrs.dedup_by_key(|a| a.addr);
    (
        Resolution::Bound(BoundName::new(id.clone(), addrs)),
        unresolved,
    )
}

/// For [`crate::fuzz_support`]: a `/v2/apps` body parsed as the namer does, and the
/// resolution of each app (task hosts that are not IP addresses stay unresolved).
pub(crate) fn apps_body(body: &[u8], use_health_check: bool) -> Result<Vec<Resolution>, String> {
    let apps = api::parse_apps(body, use_health_check)?;
    let id = Path::from_labels(["#", "marathon"]);
    let hosts = HashMap::new();
    Ok(apps
        .keys()
        .map(|app| resolution(&id, app, &apps, &hosts).0)
        .collect())
}

/// For [`crate::fuzz_support`]: an event stream cut into `chunks`, parsed as the namer reads
/// it; for each event, its type and whether it prompts a new read of the apps.
pub(crate) fn event_chunks(chunks: &[&[u8]]) -> Result<Vec<(String, bool)>, String> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    for chunk in chunks {
        let events = parser
            .feed(chunk)
            .map_err(|_| format!("an event over {} bytes", events::MAX_EVENT_BYTES))?;
        out.extend(
            events
                .iter()
                .map(|ev| (ev.event_type.clone(), relevant(ev))),
        );
    }
    Ok(out)
}

fn replace_if_changed(cur: &mut Resolution, new: Resolution) -> bool {
    let changed = *cur != new;
    if changed {
        *cur = new;
    }
    changed
}

/// Forgets `app` once nobody watches it, and stops the refresher with the last name.
async fn unwatch(shared: Arc<Shared>, app: String, tx: watch::Sender<Resolution>) {
    loop {
        tx.closed().await;
        let mut st = shared.lock();
        // A lookup subscribes while holding the lock, so this check cannot race with it.
        if tx.receiver_count() == 0 {
            st.names.remove(&app);
            if st.names.is_empty() {
                if let Some(task) = st.refresher.take() {
                    task.abort();
                }
                st.apps = None;
                st.hosts.clear();
                st.error = None;
            }
            return;
        }
    }
}

/// The refresher: reads the apps every `ttl` and after relevant events, follows the event
/// stream; runs until aborted.
async fn refresh(shared: Arc<Shared>, generation: u64) {
    tokio::join!(poll(&shared, generation), follow_events(&shared));
}

async fn poll(shared: &Shared, generation: u64) {
    let mut backoff = Backoff::new(shared.backoff.min, shared.backoff.max);
    loop {
        let wait = match shared.read_apps().await {
            Ok((apps, hosts)) => {
                shared.status.updated();
                shared.publish(generation, apps, hosts);
                backoff.reset();
                shared.ttl
            }
            Err(e) => {
                tracing::warn!(namer = %shared.prefix, error = %e, "marathon read failed; keeping the last good endpoints");
                shared.status.failed(&e);
                shared.fail(generation, e.into());
                backoff.next_wait()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.kick.notified() => tokio::time::sleep(DEBOUNCE).await,
        }
    }
}

/// Follows `/v2/events`, asking for a read after each relevant event; reconnects with
/// backoff. Event stream failures are logged, not counted as backend errors: the `ttl`
/// reads still keep the names current, and their outcome is the namer's health.
async fn follow_events(shared: &Shared) {
    let mut backoff = Backoff::new(shared.backoff.min, shared.backoff.max);
    loop {
        match shared.events().await {
            Ok(body) => {
                tracing::debug!(namer = %shared.prefix, "following marathon's event stream");
                backoff.reset();
                // Whatever changed while the stream was down.
                shared.kick.notify_one();
                match read_events(shared, body).await {
                    Ok(()) => {
                        tracing::info!(namer = %shared.prefix, "marathon's event stream ended; reconnecting")
                    }
                    Err(e) => {
                        tracing::warn!(namer = %shared.prefix, error = %e, "marathon's event stream failed; reconnecting")
                    }
                }
                // A stream that ends may mean Marathon went away: a read tells at once
                // rather than at the next `ttl`.
                shared.kick.notify_one();
            }
            Err(e) => {
                tracing::warn!(namer = %shared.prefix, error = %e, "cannot follow marathon's event stream; reading apps every ttl meanwhile");
            }
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

async fn read_events(shared: &Shared, mut body: Incoming) -> Result<(), String> {
    let mut parser = SseParser::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let events = parser
            .feed(data)
            .map_err(|_| format!("an event over {} bytes", events::MAX_EVENT_BYTES))?;
        if events.iter().any(relevant) {
            shared.kick.notify_one();
        }
    }
    Ok(())
}

/// Whether an event may have moved tasks. The type is the `event:` field, or the data's
/// `eventType` for a stream that sends no `event:` lines.
fn relevant(ev: &SseEvent) -> bool {
    if ev.event_type != "message" {
        return RELEVANT_EVENTS.contains(&ev.event_type.as_str());
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        event_type: String,
    }
    serde_json::from_str::<Typed>(&ev.data)
        .is_ok_and(|t| RELEVANT_EVENTS.contains(&t.event_type.as_str()))
}

impl Shared {
    /// `GET /v2/apps?embed=apps.tasks`: the whole body, at most
    /// [`crate::http::DEFAULT_MAX_BODY`] (16 MiB), within the timeout.
    ///
    /// # Errors
    /// Unreachable, timed out, a status other than 200, an oversized body; the message
    /// starts with the request line.
    async fn apps(&self) -> Result<Bytes, String> {
        let (path, headers) = self.request(APPS_PATH, "application/json").await?;
        let resp = self.http.get(&path, &headers, self.timeout).await;
        let resp = resp.map_err(|e| e.to_string())?;
        self.check(&path, resp.status, &resp.headers).await?;
        Ok(resp.body)
    }

    /// `GET /v2/events` with `Accept: text/event-stream`: the open stream's body, which the
    /// caller reads with its own cap per event.
    ///
    /// # Errors
    /// As [`Shared::apps`], for the response head only.
    async fn events(&self) -> Result<Incoming, String> {
        let (path, headers) = self.request(EVENTS_PATH, "text/event-stream").await?;
        let resp = self.http.get_stream(&path, &headers, self.timeout).await;
        let resp = resp.map_err(|e| e.to_string())?;
        self.check(&path, resp.status(), resp.headers()).await?;
        Ok(resp.into_body())
    }

    /// The path of `api_path` behind `uriPrefix`, and the headers of a request for it:
    /// `Accept` and, with credentials, `Authorization` (a DC/OS login first if needed).
    ///
    /// # Errors
    /// The DC/OS login failed; the message starts with the request line.
    async fn request(
        &self,
        api_path: &str,
        accept: &'static str,
    ) -> Result<(String, Vec<(HeaderName, HeaderValue)>), String> {
        let path = format!("{}{api_path}", self.uri_prefix);
        let mut headers = vec![(ACCEPT, HeaderValue::from_static(accept))];
        match self.auth.header().await {
            Ok(None) => {}
            Ok(Some(value)) => headers.push((AUTHORIZATION, value)),
            Err(e) => return Err(format!("GET {path}: {e}")),
        }
        Ok((path, headers))
    }

    /// 200 is good; a 401 or 403 also tells the credentials they were refused.
    ///
    /// # Errors
    /// Any other status, as a message starting with the request line of `path`.
    async fn check(
        &self,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<(), String> {
        let error = match status {
            StatusCode::OK => return Ok(()),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                self.auth.rejected().await;
                let challenge = headers
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default();
                format!("status {s}{challenge}: {}", self.auth.hint())
            }
            s => format!("status {s}"),
        };
        Err(format!("GET {path}: {error}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section leaves the state consistent (single inserts, removes and
        // assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One read of the apps, and the addresses of the watched apps' task hosts.
    async fn read_apps(&self) -> Result<(Apps, HashMap<Box<str>, IpAddr>), String> {
        let body = self.apps().await?;
        let apps = api::parse_apps(&body, self.use_health_check)?;
        let (names, mut hosts) = {
            let st = self.lock();
            let hosts = st.hosts.clone();
            let names: HashSet<Box<str>> = st
                .names
                .keys()
                .filter_map(|app| apps.get(app))
                .flatten()
                .filter(|t| t.host.parse::<IpAddr>().is_err())
                .map(|t: &TaskAddr| t.host.clone())
                .collect();
            (names, hosts)
        };
        hosts.retain(|h, _| names.contains(h));
        let mut lookups = tokio::task::JoinSet::new();
        for host in names {
            lookups.spawn(async move {
                let lookup = tokio::net::lookup_host((&*host, 0));
                let ip = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
                    Ok(Ok(mut addrs)) => addrs.next().map(|a| a.ip()),
                    Ok(Err(e)) => {
                        tracing::warn!(%host, error = %e, "cannot resolve a marathon task's host");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(%host, "resolving a marathon task's host timed out");
                        None
                    }
                };
                (host, ip)
            });
        }
        while let Some(done) = lookups.join_next().await {
            // A resolution task only panics if the runtime is going away.
            if let Ok((host, Some(ip))) = done {
                hosts.insert(host, ip);
            }
        }
        Ok((apps, hosts))
    }

    /// A good read: every watched name gets its new answer.
    fn publish(&self, generation: u64, apps: Apps, hosts: HashMap<Box<str>, IpAddr>) {
        let mut st = self.lock();
        if st.generation != generation || st.refresher.is_none() {
            return;
        }
        for (app, w) in &st.names {
            let (r, _) = resolution(&w.id, app, &apps, &hosts);
            w.tx.send_if_modified(|cur| replace_if_changed(cur, r));
        }
        st.apps = Some(Arc::new(apps));
        st.hosts = hosts;
        st.error = None;
    }

    /// A failed read: names with a good answer keep it, the others fail.
    fn fail(&self, generation: u64, error: Arc<str>) {
        let mut st = self.lock();
        if st.generation != generation || st.refresher.is_none() {
            return;
        }
        let msg: Arc<str> = format!("{}: {error}", self.prefix).into();
        for w in st.names.values() {
            w.tx.send_if_modified(|cur| match cur {
                Resolution::Pending | Resolution::Failed(_) => {
                    replace_if_changed(cur, Resolution::Failed(msg.clone()))
                }
                _ => false,
            });
        }
        st.error = Some(msg);
    }
}
