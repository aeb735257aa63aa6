//! Consul's HTTP API as the namer reads it: request paths, the JSON shapes of the answers,
//! blocking-query index handling, and the pure step from health entries to addresses.
//!
//! Shapes and rules come from Consul's API documentation: `GET /v1/health/service/:service`
//! (`[{Node, Service, Checks}]`), `GET /v1/catalog/services` (`{"name": ["tag", ...]}`),
//! `GET /v1/agent/self` (`{"Config": {"Datacenter": ...}}`) and "Blocking Queries".

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use weft_config::{ConsulConsistency, TagWeight};
use weft_naming::{Address, AddressMeta};

/// One entry of `/v1/health/service/<service>`: an instance with its node and checks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceEntry {
    pub(super) node: Node,
    pub(super) service: Service,
    #[serde(default)]
    pub(super) checks: Option<Vec<Check>>,
}

/// The node part of a health entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Node {
    pub(super) node: String,
    pub(super) address: String,
}

/// The service part of a health entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Service {
    #[serde(default)]
    pub(super) tags: Option<Vec<String>>,
    #[serde(default)]
    pub(super) address: Option<String>,
    /// Any JSON number, so that an out-of-range port skips one instance instead of failing
    /// the whole answer.
    pub(super) port: serde_json::Number,
    #[serde(default)]
    pub(super) meta: Option<BTreeMap<String, String>>,
}

/// One health check of an instance (node checks such as `serfHealth` included).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Check {
    pub(super) status: String,
}

/// `/v1/catalog/services`: service name to the union of its instances' tags.
pub(super) type CatalogServices = HashMap<String, Option<Vec<String>>>;

/// `/v1/agent/self`, the part the namer reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AgentSelf {
    pub(super) config: AgentConfig,
}

/// `Config` of `/v1/agent/self`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AgentConfig {
    pub(super) datacenter: String,
}

/// The response header carrying a blocking query's index.
pub(super) const INDEX_HEADER: &str = "x-consul-index";

/// How the namer turns health entries into addresses.
pub(super) struct Settings<'a> {
    /// An instance gets traffic only if every check's status is one of these.
    pub(super) health_statuses: &'a [String],
    /// `Service.Address` (when set) rather than `Node.Address`.
    pub(super) prefer_service_address: bool,
    /// Weights by tag; the highest matching one wins, else 1.0.
    pub(super) weights: &'a [TagWeight],
    /// The `authority` of every address's metadata (`setHost`).
    pub(super) authority: Option<&'a str>,
}

/// The addresses of the healthy instances among `entries`, sorted by address (one per
/// address), and how many instances were skipped for a bad address or port.
pub(super) fn addresses(entries: &[ServiceEntry], s: &Settings<'_>) -> (Vec<Address>, usize) {
    let mut addrs = Vec::with_capacity(entries.len());
    let mut bad = 0;
    for e in entries {
        let healthy = e
            .checks
            .iter()
            .flatten()
            .all(|c| s.health_statuses.contains(&c.status));
        if !healthy {
            continue;
        }
        let host = match &e.service.address {
            Some(a) if s.prefer_service_address && !a.is_empty() => a,
            _ => &e.node.address,
        };
        let port = e
            .service
            .port
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let (Ok(ip), Some(port)) = (host.parse::<IpAddr>(), port) else {
            bad += 1;
            continue;
        };
        let tags = e.service.tags.as_deref().unwrap_or_default();
        let weight = s
            .weights
            .iter()
            .filter(|w| tags.contains(&w.tag))
            .map(|w| w.weight)
            .fold(None, |best: Option<f64>, w| {
                Some(best.map_or(w, |b| b.max(w)))
            })
            .unwrap_or(1.0);
        let meta = AddressMeta {
            node: Some(e.node.node.as_str().into()),
            authority: s.authority.map(Into::into),
            labels: e
                .service
                .meta
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        };
        addrs.push(Address::weighted(SocketAddr::new(ip, port), weight).with_meta(meta));
    }
    addrs.sort_by_key(|a| a.addr);
    addrs.dedup_by_key(|a| a.addr);
    (addrs, bad)
}

/// The index for the next blocking query, after a response carrying `got`, following
/// Consul's "Blocking Queries" implementation notes: an index that went backwards resets the
/// loop (0: the next query answers at once); an index of 0 after a response is used as 1, so
/// that a buggy 0 never turns blocking queries into a busy loop.
pub(super) fn next_index(prev: u64, got: u64) -> u64 {
    if got < prev {
        0
    } else {
        got.max(1)
    }
}

/// `X-Consul-Index` of a response, if present and a number.
pub(super) fn index_of(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(INDEX_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The path of a blocking health query.
pub(super) fn health_path(
    service: &str,
    dc: Option<&str>,
    tag: Option<&str>,
    consistency: ConsulConsistency,
    index: u64,
    wait: Duration,
) -> String {
    let mut p = format!("/v1/health/service/{}?", encode(service));
    if let Some(tag) = tag {
        let _ = write!(p, "tag={}&", encode(tag));
    }
    query(p, dc, consistency, index, wait)
}

/// The path of a blocking catalog query.
pub(super) fn catalog_path(
    dc: Option<&str>,
    consistency: ConsulConsistency,
    index: u64,
    wait: Duration,
) -> String {
    query("/v1/catalog/services?".into(), dc, consistency, index, wait)
}

/// Appends `dc`, consistency, `index` (not on the first query) and `wait` to `p`, which ends
/// in `?` or `&`.
fn query(
    mut p: String,
    dc: Option<&str>,
    consistency: ConsulConsistency,
    index: u64,
    wait: Duration,
) -> String {
    if let Some(dc) = dc {
        let _ = write!(p, "dc={}&", encode(dc));
    }
    match consistency {
        ConsulConsistency::Default => {}
        ConsulConsistency::Stale => p.push_str("stale&"),
        ConsulConsistency::Consistent => p.push_str("consistent&"),
    }
    if index > 0 {
        let _ = write!(p, "index={index}&");
    }
    if wait.subsec_millis() == 0 {
        let _ = write!(p, "wait={}s", wait.as_secs());
    } else {
        let _ = write!(p, "wait={}ms", wait.as_millis());
    }
    p
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example answer of `GET /v1/health/service/:service` in Consul's API docs (trimmed
    /// of fields the namer ignores, plus a second instance with a failing check).
    const DOC_EXAMPLE: &str = r#"[
      {"Node": {"ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "foobar",
                "Address": "10.1.10.12", "Datacenter": "dc1",
                "TaggedAddresses": {"lan": "10.1.10.12", "wan": "10.1.10.12"},
                "Meta": {"instance_type": "t2.medium"}},
       "Service": {"ID": "redis", "Service": "redis", "Tags": ["primary"],
                   "Address": "10.1.10.12", "Meta": {"redis_version": "4.0", "a": "b"},
                   "Port": 8000, "Weights": {"Passing": 10, "Warning": 1},
                   "Namespace": "default"},
       "Checks": [
         {"Node": "foobar", "CheckID": "service:redis", "Name": "Service 'redis' check",
          "Status": "passing", "Notes": "", "Output": "", "ServiceID": "redis",
          "ServiceName": "redis", "ServiceTags": ["primary"], "Namespace": "default"},
         {"Node": "foobar", "CheckID": "serfHealth", "Name": "Serf Health Status",
          "Status": "passing", "Notes": "", "Output": "", "ServiceID": "",
          "ServiceName": "", "ServiceTags": [], "Namespace": "default"}]},
      {"Node": {"Node": "baz", "Address": "10.1.10.13", "Datacenter": "dc1"},
       "Service": {"ID": "redis2", "Service": "redis", "Tags": [], "Address": "",
                   "Meta": null, "Port": 8001},
       "Checks": [{"Status": "passing"}, {"Status": "warning"}]}
    ]"#;

    fn settings<'a>(statuses: &'a [String], weights: &'a [TagWeight]) -> Settings<'a> {
        Settings {
            health_statuses: statuses,
            prefer_service_address: true,
            weights,
            authority: None,
        }
    }

    #[test]
    fn doc_example_keeps_passing_instances_with_meta() {
        let entries: Vec<ServiceEntry> = serde_json::from_str(DOC_EXAMPLE).unwrap();
        let passing = ["passing".to_owned()];
        let (addrs, bad) = addresses(&entries, &settings(&passing, &[]));
        assert_eq!(bad, 0);
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        assert_eq!(addrs[0].addr, "10.1.10.12:8000".parse().unwrap());
        assert_eq!(addrs[0].weight, 1.0);
        let meta = addrs[0].meta.as_deref().unwrap();
        assert_eq!(meta.node.as_deref(), Some("foobar"));
        let labels: Vec<(&str, &str)> = meta.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(labels, [("a", "b"), ("redis_version", "4.0")]);

        let both = ["passing".to_owned(), "warning".to_owned()];
        let (addrs, _) = addresses(&entries, &settings(&both, &[]));
        let got: Vec<String> = addrs.iter().map(|a| a.addr.to_string()).collect();
        // The second instance has no service address: the node's is used.
        assert_eq!(got, ["10.1.10.12:8000", "10.1.10.13:8001"]);
    }

    #[test]
    fn weights_take_the_highest_matching_tag() {
        let entries: Vec<ServiceEntry> = serde_json::from_str(DOC_EXAMPLE).unwrap();
        let passing = ["passing".to_owned()];
        let w = |tag: &str, weight| TagWeight {
            tag: tag.into(),
            weight,
        };
        let weights = [w("primary", 2.0), w("other", 9.0), w("primary", 5.0)];
        let (addrs, _) = addresses(&entries, &settings(&passing, &weights));
        assert_eq!(addrs[0].weight, 5.0);
    }

    #[test]
    fn node_address_unless_preferring_the_service_address() {
        let json = r#"[{"Node": {"Node": "n", "Address": "10.0.0.1"},
            "Service": {"Address": "10.0.0.2", "Port": 80}, "Checks": []}]"#;
        let entries: Vec<ServiceEntry> = serde_json::from_str(json).unwrap();
        let passing = ["passing".to_owned()];
        let mut s = settings(&passing, &[]);
        s.authority = Some("web.service.dc1.consul");
        let (addrs, _) = addresses(&entries, &s);
        assert_eq!(addrs[0].addr, "10.0.0.2:80".parse().unwrap());
        assert_eq!(
            addrs[0].meta.as_ref().unwrap().authority.as_deref(),
            Some("web.service.dc1.consul")
        );
        s.prefer_service_address = false;
        let (addrs, _) = addresses(&entries, &s);
        assert_eq!(addrs[0].addr, "10.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn bad_ports_and_addresses_skip_the_instance_and_are_counted() {
        let entry = |addr: &str, port: &str| {
            format!(
                r#"{{"Node": {{"Node": "n", "Address": "{addr}"}},
                   "Service": {{"Port": {port}}}, "Checks": [{{"Status": "passing"}}]}}"#
            )
        };
        let json = format!(
            "[{}, {}, {}, {}, {}, {}]",
            entry("10.0.0.1", "0"),
            entry("10.0.0.1", "70000"),
            entry("10.0.0.1", "-1"),
            entry("10.0.0.1", "80.5"),
            entry("not-an-ip", "80"),
            entry("::1", "65535"),
        );
        let entries: Vec<ServiceEntry> = serde_json::from_str(&json).unwrap();
        let passing = ["passing".to_owned()];
        let (addrs, bad) = addresses(&entries, &settings(&passing, &[]));
        assert_eq!(bad, 5);
        assert_eq!(addrs.len(), 1);
        assert_eq!(addrs[0].addr, "[::1]:65535".parse().unwrap());
        // Wrong JSON types fail the whole answer.
        let wrong = r#"[{"Node": {"Node": 1, "Address": "10.0.0.1"}, "Service": {"Port": 80}}]"#;
        assert!(serde_json::from_str::<Vec<ServiceEntry>>(wrong).is_err());
        let wrong =
            r#"[{"Node": {"Node": "n", "Address": "10.0.0.1"}, "Service": {"Port": "80"}}]"#;
        assert!(serde_json::from_str::<Vec<ServiceEntry>>(wrong).is_err());
    }

    #[test]
    fn index_follows_consuls_rules() {
        assert_eq!(next_index(0, 7), 7);
        assert_eq!(next_index(7, 7), 7, "an unchanged index blocks again");
        assert_eq!(next_index(7, 9), 9);
        assert_eq!(
            next_index(9, 3),
            0,
            "an index that went backwards resets the loop"
        );
        assert_eq!(next_index(0, 0), 1, "never 0 after a response");
        let mut h = http::HeaderMap::new();
        assert_eq!(index_of(&h), None);
        h.insert(INDEX_HEADER, "42".parse().unwrap());
        assert_eq!(index_of(&h), Some(42));
        h.insert(INDEX_HEADER, "x".parse().unwrap());
        assert_eq!(index_of(&h), None);
    }

    #[test]
    fn paths() {
        let w = Duration::from_secs(300);
        assert_eq!(
            health_path("web", None, None, ConsulConsistency::Default, 0, w),
            "/v1/health/service/web?wait=300s"
        );
        assert_eq!(
            health_path(
                "a b",
                Some("dc1"),
                Some("v/1"),
                ConsulConsistency::Stale,
                9,
                w
            ),
            "/v1/health/service/a%20b?tag=v%2F1&dc=dc1&stale&index=9&wait=300s"
        );
        assert_eq!(
            catalog_path(
                Some("dc2"),
                ConsulConsistency::Consistent,
                3,
                Duration::from_millis(1500)
            ),
            "/v1/catalog/services?dc=dc2&consistent&index=3&wait=1500ms"
        );
    }
}
