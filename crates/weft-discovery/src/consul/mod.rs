//! The `consul` namer (Linkerd 1's `io.l5d.consul`): services registered in Consul, watched
//! with blocking queries on the agent's HTTP API.

mod api;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::sync::{watch as chan, OnceCell};
use weft_config::ConsulConfig;
use weft_naming::{Namer, NamerStatus, Path, Resolution};

use crate::http::{HttpClient, HttpResponse};
use crate::DiscoveryError;

/// Timeout of the requests that do not block (`/v1/agent/self`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to `wait + wait/16` (Consul's own jitter) for the timeout of a blocking query.
const BLOCKING_SLACK: Duration = Duration::from_secs(5);
/// The shortest time between the starts of two queries of one watch: Consul's blocking
/// query notes ask clients to rate-limit, so a backend that answers at once with an
/// unchanged index cannot make a watch spin.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// `kind: consul`: names are `/<dc>/<service>`, or with `includeTag` `/<dc>/<tag>/<service>`;
/// the datacenter `.local` is the agent's own (no `dc=` is sent). The bound id is the prefix
/// and those labels, e.g. `/#/consul/dc1/web`; further labels are ignored.
///
/// Each name is watched with a blocking query on `GET /v1/health/service/<service>`
/// (`?dc=&tag=&index=<X-Consul-Index>&wait=<wait>`, `&stale` or `&consistent` per
/// `consistencyMode`, the ACL token in `X-Consul-Token`, `tokenFile` read again for each
/// request), so a change arrives as soon as Consul has it. An instance gets traffic when every
/// one of its checks has a status in `healthStatuses` (computed here: Consul's `?passing`
/// only knows `passing`). Its address is `Service.Address` when set and
/// `preferServiceAddress`, else `Node.Address` (an IP is expected: an instance whose address
/// is not an IP, or whose port is 0 or out of range, is skipped and counted as an error); its
/// weight is the highest of `weights` whose tag it carries, else 1.0; its metadata has the
/// node name, `Service.Meta` as labels, and with `setHost` the authority
/// `<service>.service.<dc>.<consulDomain>` (for `.local`, the agent's datacenter read once
/// from `GET /v1/agent/self`).
///
/// Consul answers `[]` for a service it does not know, so a blocking query on
/// `/v1/catalog/services` (one per datacenter, shared) tells a service that does not exist
/// (Neg; with a tag, also a service none of whose instances has the tag) from one with no
/// healthy instance (bound, empty). A failed exchange (agent unreachable, an error status,
/// malformed or oversized JSON, no answer within `wait + wait/16 + 5s`) keeps the last good
/// answer, is counted on the status, and is retried after a jittered backoff.
///
/// One watch runs per (datacenter, tag, service) while anyone watches it.
pub struct ConsulNamer {
    inner: Arc<Inner>,
}

/// A watched name: datacenter (`None` for `.local`), tag, service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SvcKey {
    dc: Option<Box<str>>,
    tag: Option<Box<str>>,
    service: Box<str>,
}

struct Inner {
    prefix: Path,
    config: ConsulConfig,
    http: HttpClient,
    status: NamerStatus,
    services: Mutex<HashMap<SvcKey, chan::Sender<Resolution>>>,
    catalogs: Mutex<HashMap<Option<Box<str>>, chan::Sender<watch::Catalog>>>,
    agent_dc: OnceCell<Box<str>>,
}

impl ConsulNamer {
    /// Builds the namer at `prefix`. Nothing is sent to Consul until a name is looked up.
    ///
    /// # Errors
    /// TLS settings that cannot be loaded (a `trustCerts` or `clientAuth` file that cannot be
    /// read or parsed, an invalid `commonName`).
    pub fn new(config: &ConsulConfig, prefix: &Path) -> Result<ConsulNamer, DiscoveryError> {
        let http = HttpClient::new(&config.host, config.port, config.tls.as_ref())
            .map_err(|e| DiscoveryError::new(prefix, e))?;
        let status = NamerStatus::new("consul", http.base());
        Ok(ConsulNamer {
            inner: Arc::new(Inner {
                prefix: prefix.clone(),
                config: config.clone(),
                http,
                status,
                services: Mutex::default(),
                catalogs: Mutex::default(),
                agent_dc: OnceCell::new(),
            }),
        })
    }
}

impl Namer for ConsulNamer {
    fn lookup(&self, residual: &Path) -> chan::Receiver<Resolution> {
        let n = if self.inner.config.include_tag { 3 } else { 2 };
        let labels: Option<Vec<&str>> = (0..n)
            .map(|i| residual.label(i).and_then(|l| std::str::from_utf8(l).ok()))
            .collect();
        let Some(labels) = labels else {
            return fixed(Resolution::Neg);
        };
        let dc = (labels[0] != ".local").then(|| labels[0].into());
        let (tag, service) = match labels[..] {
            [_, tag, service] => (Some(tag.into()), service.into()),
            [_, service] => (None, service.into()),
            _ => return fixed(Resolution::Neg),
        };
        let key = SvcKey { dc, tag, service };
        let mut services = lock(&self.inner.services);
        if let Some(tx) = services.get(&key) {
            return tx.subscribe();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "the consul namer needs a tokio runtime".into(),
            ));
        };
        let id = self.inner.prefix.concat(&residual.take(n));
        let (tx, rx) = chan::channel(Resolution::Pending);
        services.insert(key.clone(), tx.clone());
        runtime.spawn(watch::service(self.inner.clone(), key, id, tx));
        rx
    }

    fn status(&self) -> Option<NamerStatus> {
        Some(self.inner.status.clone())
    }
}

impl Inner {
    /// `GET path` with the ACL token; anything but a 200 is an error.
    async fn get(&self, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
        let mut headers = Vec::new();
        if let Some(token) = self.token().await? {
            let mut v = HeaderValue::from_str(&token)
                .map_err(|_| "the ACL token is not a valid header value".to_owned())?;
            v.set_sensitive(true);
            headers.push((HeaderName::from_static("x-consul-token"), v));
        }
        let resp = self
            .http
            .get(path, &headers, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status != http::StatusCode::OK {
            let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]);
            return Err(format!("GET {path}: {} {}", resp.status, body.trim()));
        }
        Ok(resp)
    }

    /// The ACL token: `token`, or the content of `tokenFile` read now (trimmed).
    async fn token(&self) -> Result<Option<String>, String> {
        if let Some(t) = &self.config.token {
            return Ok(Some(t.clone()).filter(|t| !t.is_empty()));
        }
        let Some(file) = &self.config.token_file else {
            return Ok(None);
        };
        let t = tokio::fs::read_to_string(file)
            .await
            .map_err(|e| format!("cannot read tokenFile {}: {e}", file.display()))?;
        Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty()))
    }

    /// The timeout of one blocking query: `wait`, Consul's jitter of up to `wait/16`, slack.
    fn blocking_timeout(&self) -> Duration {
        self.config.wait + self.config.wait / 16 + BLOCKING_SLACK
    }

    /// The agent's datacenter, from `GET /v1/agent/self` the first time it is needed.
    async fn agent_dc(&self) -> Result<&str, String> {
        let dc = self
            .agent_dc
            .get_or_try_init(|| async {
                let path = "/v1/agent/self";
                let resp = self.get(path, REQUEST_TIMEOUT).await?;
                let me: api::AgentSelf = serde_json::from_slice(&resp.body)
                    .map_err(|e| format!("GET {path}: malformed answer: {e}"))?;
                Ok::<_, String>(me.config.datacenter.into_boxed_str())
            })
            .await?;
        Ok(dc)
    }

    /// The `setHost` authority of `key`, if `setHost` is on.
    async fn authority(&self, key: &SvcKey) -> Result<Option<String>, String> {
        if !self.config.set_host {
            return Ok(None);
        }
        let dc = match &key.dc {
            Some(dc) => dc,
            None => self.agent_dc().await?,
        };
        Ok(Some(format!(
            "{}.service.{dc}.{}",
            key.service, self.config.consul_domain
        )))
    }
}

/// For [`crate::fuzz_support`]: a `/v1/health/service` body read and converted as the watch
/// does (passing instances only, `preferServiceAddress`, a `canary` tag weighted 0.5).
pub(crate) fn health_body(body: &[u8]) -> Result<(Vec<weft_naming::Address>, usize), String> {
    let entries: Vec<api::ServiceEntry> =
        serde_json::from_slice(body).map_err(|e| format!("malformed answer: {e}"))?;
    let statuses = ["passing".to_string()];
    let weights = [weft_config::TagWeight {
        tag: "canary".into(),
        weight: 0.5,
    }];
    let settings = api::Settings {
        health_statuses: &statuses,
        prefer_service_address: true,
        weights: &weights,
        authority: Some("web.service.dc1.consul"),
    };
    Ok(api::addresses(&entries, &settings))
}

/// For [`crate::fuzz_support`]: a `/v1/catalog/services` body read as the watch does; the
/// number of services.
pub(crate) fn catalog_body(body: &[u8]) -> Result<usize, String> {
    let services: api::CatalogServices =
        serde_json::from_slice(body).map_err(|e| format!("malformed answer: {e}"))?;
    Ok(services.len())
}

/// A receiver that always holds `r`.
fn fixed(r: Resolution) -> chan::Receiver<Resolution> {
    chan::channel(r).1
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single insert, get or remove: the map stays consistent even
    // if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
