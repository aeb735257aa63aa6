//! [`FakeConsul`]: a Consul agent's HTTP API for the consul namer's tests.
//!
//! Consul itself cannot be installed where these tests run, so this server follows Consul's
//! documented HTTP API instead: the endpoints the namer reads, shaped like the examples of
//! Consul's API reference, with the documented blocking-query semantics.
//!
//! - `GET /v1/health/service/<service>[?dc=&tag=&passing&index=&wait=]`: the instances
//!   (`[{Node, Service, Checks}]`), `[]` for a service it does not know;
//! - `GET /v1/catalog/services[?dc=&index=&wait=]`: `{"<service>": ["<tag>", ...]}` over
//!   the registered instances;
//! - `GET /v1/agent/self`: `{"Config": {"Datacenter": "dc1", ...}, ...}`.
//!
//! Every answer carries `X-Consul-Index`, the index of the last change (one index for the
//! whole fake: Consul's own may move for changes that do not touch a query's result). A
//! query with `index=N` blocks while the index is still `N` (or less), until a change or
//! `wait` (Go duration syntax, `5s`, `1m`, `500ms`; default 5m, at most 10m) elapses, and
//! then answers the current state, as Consul does. A `dc` other than the agent's answers 500
//! `No path to datacenter`. Faults on cue ([`ConsulFault`]): an error status, malformed
//! JSON, or a request accepted and never answered; [`FakeConsul::stop`] and
//! [`FakeConsul::restart`] take the agent away and back on the same port.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A fake Consul agent on `127.0.0.1:0`; see the module documentation. Stops when dropped.
pub struct FakeConsul {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What the fake does instead of answering normally, from now on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsulFault {
    /// Answer every request with this status and a short text body.
    Status(u16),
    /// Answer `200` with an `X-Consul-Index` and a body that is not valid JSON.
    Malformed,
    /// Accept requests and never answer them.
    Hang,
}

/// One registered service instance, with its node and check statuses.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// `Service.ID`, unique in the fake.
    pub id: String,
    /// `Service.Service`, the service name.
    pub service: String,
    /// `Node.Node`.
    pub node: String,
    /// `Node.Address`.
    pub node_address: String,
    /// `Service.Address` (empty: none).
    pub address: String,
    /// `Service.Port` (any JSON integer, to send bad ones).
    pub port: i64,
    /// `Service.Tags`.
    pub tags: Vec<String>,
    /// `Service.Meta`.
    pub meta: BTreeMap<String, String>,
    /// The `Status` of each check (`passing`, `warning`, `critical`), the node's
    /// `serfHealth` first.
    pub checks: Vec<String>,
}

impl Instance {
    /// An instance of `service` at `addr` on node `node-<id>` (whose address is `addr`'s
    /// IP), no service address, no tags, checks `serfHealth` and one service check, both
    /// passing.
    pub fn new(service: &str, id: &str, addr: SocketAddr) -> Instance {
        Instance {
            id: id.into(),
            service: service.into(),
            node: format!("node-{id}"),
            node_address: addr.ip().to_string(),
            address: String::new(),
            port: i64::from(addr.port()),
            tags: Vec::new(),
            meta: BTreeMap::new(),
            checks: vec!["passing".into(), "passing".into()],
        }
    }

    /// With this tag added.
    pub fn tag(mut self, tag: &str) -> Instance {
        self.tags.push(tag.into());
        self
    }

    /// With this `Service.Meta` entry.
    pub fn meta(mut self, key: &str, value: &str) -> Instance {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// With these check statuses (replacing the two passing ones).
    pub fn checks(mut self, statuses: &[&str]) -> Instance {
        self.checks = statuses.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The entry of `/v1/health/service`, shaped as in Consul's API reference.
    fn health_entry(&self, dc: &str) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let (check_id, name, sid, sname) = if i == 0 {
                    (
                        "serfHealth".to_owned(),
                        "Serf Health Status".to_owned(),
                        "",
                        "",
                    )
                } else {
                    (
                        format!("service:{}:{i}", self.id),
                        format!("Service '{}' check", self.service),
                        self.id.as_str(),
                        self.service.as_str(),
                    )
                };
                json!({
                    "Node": self.node, "CheckID": check_id, "Name": name, "Status": status,
                    "Notes": "", "Output": "", "ServiceID": sid, "ServiceName": sname,
                    "ServiceTags": if i == 0 { Vec::new() } else { self.tags.clone() },
                    "Namespace": "default",
                })
            })
            .collect();
        json!({
            "Node": {
                "ID": format!("00000000-0000-0000-0000-{:012}", self.node.len()),
                "Node": self.node, "Address": self.node_address, "Datacenter": dc,
                "TaggedAddresses": {"lan": self.node_address, "wan": self.node_address},
                "Meta": {"consul-network-segment": ""},
            },
            "Service": {
                "ID": self.id, "Service": self.service, "Tags": self.tags,
                "Address": self.address, "Meta": self.meta, "Port": self.port,
                "Weights": {"Passing": 1, "Warning": 1}, "Namespace": "default",
            },
            "Checks": checks,
        })
    }
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change of state or fault, to wake blocked queries.
    changes: watch::Sender<u64>,
    requests: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
}

struct State {
    index: u64,
    datacenter: String,
    instances: Vec<Instance>,
    fault: Option<ConsulFault>,
}

// === impl FakeConsul ===

impl FakeConsul {
    /// Starts an agent of datacenter `dc1` with nothing registered, index 10.
    pub async fn start() -> FakeConsul {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake consul");
        let addr = listener.local_addr().expect("fake consul addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                index: 10,
                datacenter: "dc1".into(),
                instances: Vec::new(),
                fault: None,
            }),
            changes: watch::channel(0).0,
            requests: Mutex::default(),
            tokens: Mutex::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeConsul {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The current `X-Consul-Index`.
    pub fn index(&self) -> u64 {
        self.state().index
    }

    /// Registers (or replaces, by id) an instance; the index moves on.
    pub fn register(&self, instance: Instance) {
        self.change(|s| {
            s.instances.retain(|i| i.id != instance.id);
            s.instances.push(instance);
        });
    }

    /// Deregisters the instance with this id; the index moves on.
    pub fn deregister(&self, id: &str) {
        self.change(|s| s.instances.retain(|i| i.id != id));
    }

    /// Sets the check statuses of the instance with this id; the index moves on.
    pub fn set_checks(&self, id: &str, statuses: &[&str]) {
        self.change(|s| {
            for i in s.instances.iter_mut().filter(|i| i.id == id) {
                i.checks = statuses.iter().map(|s| (*s).to_owned()).collect();
            }
        });
    }

    /// Sets the index to `index` (e.g. lower, as after a restore of Consul's state).
    pub fn set_index(&self, index: u64) {
        self.state().index = index;
        self.shared.changes.send_modify(|g| *g += 1);
    }

    /// Misbehaves from now on (`None`: answers normally again). Blocked queries are woken
    /// and get the fault.
    pub fn set_fault(&self, fault: Option<ConsulFault>) {
        self.state().fault = fault;
        self.shared.changes.send_modify(|g| *g += 1);
    }

    /// The path and query of every request received so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .expect("fake consul requests lock")
            .clone()
    }

    /// The `X-Consul-Token` of every request that carried one, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.shared
            .tokens
            .lock()
            .expect("fake consul tokens lock")
            .clone()
    }

    /// Stops listening and drops every connection (queries in flight see them close).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().expect("fake consul task lock").take() {
            task.abort();
        }
    }

    /// Listens again on the same port after [`FakeConsul::stop`].
    pub async fn restart(&self) {
        self.stop();
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind fake consul again on its port");
        let task = tokio::spawn(accept_loop(listener, self.shared.clone()));
        *self.task.lock().expect("fake consul task lock") = Some(task);
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        {
            let mut s = self.state();
            f(&mut s);
            s.index += 1;
        }
        self.shared.changes.send_modify(|g| *g += 1);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("fake consul state lock")
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    crate::serve::accept_loop(listener, shared, handle).await;
}

type Resp = Response<Full<Bytes>>;

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Resp, Infallible> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    shared
        .requests
        .lock()
        .expect("fake consul requests lock")
        .push(pq);
    if let Some(t) = req.headers().get("x-consul-token") {
        let t = String::from_utf8_lossy(t.as_bytes()).into_owned();
        shared
            .tokens
            .lock()
            .expect("fake consul tokens lock")
            .push(t);
    }
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let wait = query
        .get("wait")
        .and_then(|w| parse_wait(w))
        .unwrap_or(Duration::from_secs(300))
        .min(Duration::from_secs(600));
    let blocking = path == "/v1/catalog/services" || path.starts_with("/v1/health/service/");

    // Block while the index has not moved past the client's, as Consul does.
    let mut changes = shared.changes.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (fault, current) = {
            let s = shared.state.lock().expect("fake consul state lock");
            (s.fault.clone(), s.index)
        };
        match fault {
            Some(ConsulFault::Hang) => std::future::pending::<()>().await,
            Some(ConsulFault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Ok(text(status, "fake consul: fault on cue"));
            }
            Some(ConsulFault::Malformed) => {
                let mut r = text(StatusCode::OK, r#"[{"Node": {"Node": "n", "Address": "#);
                r.headers_mut().insert("x-consul-index", current.into());
                return Ok(r);
            }
            None => {}
        }
        if !blocking || index == 0 || current > index {
            break;
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }

    let s = shared.state.lock().expect("fake consul state lock");
    if let Some(dc) = query.get("dc") {
        if *dc != s.datacenter {
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "No path to datacenter",
            ));
        }
    }
    let body = if path == "/v1/agent/self" {
        json!({
            "Config": {"Datacenter": s.datacenter, "NodeName": "fake-agent",
                       "NodeID": "00000000-0000-0000-0000-000000000000", "Server": true,
                       "Version": "1.17.0"},
            "Member": {"Name": "fake-agent", "Addr": "127.0.0.1", "Port": 8301},
        })
    } else if path == "/v1/catalog/services" {
        let mut services: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for i in &s.instances {
            services
                .entry(&i.service)
                .or_default()
                .extend(i.tags.iter().map(String::as_str));
        }
        json!(services)
    } else if let Some(service) = path.strip_prefix("/v1/health/service/") {
        let service = percent_decode(service);
        let tag = query.get("tag").map(|t| percent_decode(t));
        let passing_only = query.contains_key("passing");
        let entries: Vec<Value> = s
            .instances
            .iter()
            .filter(|i| i.service == service)
            .filter(|i| tag.as_ref().is_none_or(|t| i.tags.contains(t)))
            .filter(|i| !passing_only || i.checks.iter().all(|c| c == "passing"))
            .map(|i| i.health_entry(&s.datacenter))
            .collect();
        json!(entries)
    } else {
        return Ok(text(StatusCode::NOT_FOUND, "404 page not found"));
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().expect("static"));
    h.insert("x-consul-index", s.index.into());
    h.insert("x-consul-knownleader", "true".parse().expect("static"));
    h.insert("x-consul-lastcontact", "0".parse().expect("static"));
    Ok(r)
}

fn text(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}

/// `a=1&b&c=2` as a map (a flag without `=` maps to the empty string).
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// A Go duration with one unit: `500ms`, `5s`, `1m`, `1h`; a bare number is seconds.
fn parse_wait(w: &str) -> Option<Duration> {
    let split = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    let (n, unit) = w.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_queries_parse() {
        assert_eq!(parse_wait("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_wait("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("x"), None);
        let q = parse_query("dc=dc1&stale&index=3");
        assert_eq!(q.get("stale").map(String::as_str), Some(""));
        assert_eq!(q.get("index").map(String::as_str), Some("3"));
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
    }
}
