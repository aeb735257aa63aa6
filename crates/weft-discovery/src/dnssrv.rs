//! The `dnssrv` namer: names are DNS SRV record names (RFC 2782), resolved and re-resolved
//! as their TTLs run out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::watch;
use weft_config::DnsSrvConfig;
use weft_naming::{
    publish_if_changed, wait_or_unwatched, Address, BoundName, Namer, NamerStatus, Path, Resolution,
};

use crate::{Backoff, DiscoveryError};

/// The most SRV records of one answer that are used, and the most endpoints a name gets. A
/// larger answer (it takes TCP: one UDP message holds a few dozen records) is cut to this
/// many, in a stable order, and counted as an error.
pub const MAX_ENDPOINTS: usize = 1_000;
/// The endpoint weight of an SRV record of weight 0, relative to the record weights 1 to
/// 65535: RFC 2782 says such records "SHOULD have a very small chance of being selected" when
/// others have a positive weight; among themselves they share equally.
pub const ZERO_WEIGHT: f64 = 0.01;
/// The longest one resolution (the SRV query and its targets' A/AAAA queries) may take; the
/// resolver's own timeout (5 s per query, two attempts) normally ends it first.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Targets looked up at once when the answer's additional section lacks their addresses.
const TARGET_LOOKUPS: usize = 16;

/// `kind: dnssrv` (Linkerd 1's `io.l5d.dnssrv`): the residual path's first label is an SRV
/// record name, `/#/dnssrv/_http._tcp.web.example.com`; further labels are ignored. The bound
/// id is `<prefix>/<srv-name>`.
///
/// Each name is resolved by its own task while anyone watches it (one task per name, shared
/// by all lookups):
/// - the SRV records of the **lowest priority value** present are used (RFC 2782: lower is
///   preferred; the higher values are fallbacks, which this namer does not use);
/// - each record's weight becomes the endpoint weight (weight 0 becomes [`ZERO_WEIGHT`]),
///   split evenly over the addresses of its target, so a target with two addresses gets the
///   same share as one with one;
/// - each target is resolved to its A and AAAA addresses, taken from the answer's additional
///   section when the server put them there, else looked up; the port is the record's; a
///   target of `.` ("decidedly not available", RFC 2782) gives no address, and a target with
///   no address records gives none either;
/// - at most [`MAX_ENDPOINTS`] records and endpoints are used.
///
/// The name is re-resolved when the shortest TTL of the records used runs out, within
/// `[minTtl, maxTtl]`. NXDOMAIN or no SRV record is [`Resolution::Neg`], also after the name
/// had endpoints (the service was removed: DNS answered, authoritatively). A network error or
/// timeout keeps the last answer (endpoints or Neg), counts an error on the namer's
/// [`NamerStatus`] and retries with backoff; with no answer yet the name is
/// [`Resolution::Failed`]. An empty path is Neg; a label that is not UTF-8 or not a valid DNS
/// name is Failed.
///
/// With `dnsHosts` the namer asks exactly those servers (UDP, and TCP for truncated answers)
/// and ignores `/etc/hosts`; without, the system configuration (`/etc/resolv.conf`,
/// `/etc/hosts`).
pub struct DnsSrvNamer {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: Path,
    resolver: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
    backoff: weft_config::DiscoveryBackoff,
    status: NamerStatus,
    names: Mutex<HashMap<Box<str>, watch::Sender<Resolution>>>,
}

/// What one resolution of a name found.
#[derive(Debug, PartialEq)]
enum Answer {
    /// SRV records: their endpoints, the shortest TTL seen (seconds), and how many records or
    /// addresses were dropped over [`MAX_ENDPOINTS`].
    Found {
        addrs: Vec<Address>,
        ttl: Option<u32>,
        dropped: usize,
    },
    /// NXDOMAIN or no SRV record; the negative TTL from the zone's SOA, if given.
    Missing { ttl: Option<u32> },
}

/// The fields of one SRV record that matter here (RFC 2782).
#[derive(Clone, Debug, PartialEq)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: Name,
}

impl DnsSrvNamer {
    /// Builds the namer at `prefix` with a resolver for `config.dns_hosts` (or the system's
    /// DNS configuration when empty). Nothing is resolved until a name is looked up.
    ///
    /// # Errors
    /// The system DNS configuration cannot be read (only when `dnsHosts` is empty), or the
    /// resolver cannot be built.
    pub fn new(config: &DnsSrvConfig, prefix: &Path) -> Result<DnsSrvNamer, DiscoveryError> {
        let err = |e: NetError| DiscoveryError::new(prefix, format!("DNS resolver: {e}"));
        let (builder, backend) = if config.dns_hosts.is_empty() {
            let b = TokioResolver::builder_tokio().map_err(err)?;
            (b, "system resolver".to_owned())
        } else {
            let servers = config.dns_hosts.iter().map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            });
            let rc = ResolverConfig::from_name_servers(servers.collect());
            let mut b = TokioResolver::builder_with_config(rc, TokioRuntimeProvider::default());
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            let hosts: Vec<String> = config.dns_hosts.iter().map(|a| a.to_string()).collect();
            (b, format!("dns {}", hosts.join(", ")))
        };
        let resolver = builder.build().map_err(err)?;
        Ok(DnsSrvNamer {
            inner: Arc::new(Inner {
                prefix: prefix.clone(),
                resolver,
                min_ttl: config.min_ttl,
                max_ttl: config.max_ttl.max(config.min_ttl),
                backoff: config.backoff,
                status: NamerStatus::new("dnssrv", backend),
                names: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Namer for DnsSrvNamer {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let Some(label) = residual.label(0) else {
            return fixed(Resolution::Neg);
        };
        let id = self.inner.prefix.concat(&Path::from_labels([label]));
        let Ok(srv) = std::str::from_utf8(label) else {
            return fixed(Resolution::Failed(
                format!("{id}: the SRV record name is not UTF-8").into(),
            ));
        };
        let Ok(name) = Name::from_ascii(srv).or_else(|_| Name::from_utf8(srv)) else {
            return fixed(Resolution::Failed(
                format!("{id}: `{srv}` is not a valid DNS name").into(),
            ));
        };
        let mut names = lock(&self.inner.names);
        if let Some(tx) = names.get(srv) {
            return tx.subscribe();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "DNS lookups need a tokio runtime".into(),
            ));
        };
        let (tx, rx) = watch::channel(Resolution::Pending);
        names.insert(srv.into(), tx.clone());
        let watching = self.inner.status.watching();
        let task = watch_name(self.inner.clone(), srv.into(), name, id, tx);
        runtime.spawn(async move {
            task.await;
            drop(watching);
        });
        rx
    }

    fn status(&self) -> Option<NamerStatus> {
        Some(self.inner.status.clone())
    }
}

// === the watch task ===

/// Keeps `tx` up to date with the endpoints of SRV name `name`, until nobody watches.
async fn watch_name(
    inner: Arc<Inner>,
    key: Box<str>,
    name: Name,
    id: Path,
    tx: watch::Sender<Resolution>,
) {
    let mut backoff = Backoff::new(inner.backoff.min, inner.backoff.max);
    loop {
        let round = tokio::time::timeout(ROUND_TIMEOUT, inner.resolve(&name));
        let result = tokio::select! {
            r = round => r.unwrap_or_else(|_| Err(format!("timed out after {ROUND_TIMEOUT:?}"))),
            () = tx.closed() => Err("unwatched".to_owned()),
        };
        let wait = match result {
            _ if tx.is_closed() => Duration::ZERO,
            Ok(Answer::Found {
                addrs,
                ttl,
                dropped,
            }) => {
                if dropped > 0 {
                    tracing::warn!(%id, dropped, max = MAX_ENDPOINTS, "SRV answer too large, cut");
                    inner.status.failed(format!(
                        "{id}: {dropped} SRV records or addresses over the limit of {MAX_ENDPOINTS} ignored"
                    ));
                }
                inner.status.updated();
                backoff.reset();
                let bound = Resolution::Bound(BoundName::new(id.clone(), addrs));
                publish_if_changed(&tx, bound);
                inner.ttl(ttl)
            }
            Ok(Answer::Missing { ttl }) => {
                inner.status.updated();
                backoff.reset();
                publish_if_changed(&tx, Resolution::Neg);
                inner.ttl(ttl)
            }
            Err(e) => {
                let msg = format!("SRV {name}: {e}");
                inner.status.failed(&msg);
                let answered = matches!(*tx.borrow(), Resolution::Bound(_) | Resolution::Neg);
                tracing::warn!(%id, error = %e, keeping_last_answer = answered, "DNS SRV lookup failed");
                if !answered {
                    let failed = Resolution::Failed(format!("{id}: {msg}").into());
                    publish_if_changed(&tx, failed);
                }
                backoff.next_wait()
            }
        };
        if wait_or_unwatched(&tx, wait, &inner.names, &key).await {
            return;
        }
    }
}

impl Inner {
    /// The wait before the next resolution: `ttl` seconds within `[min_ttl, max_ttl]`
    /// (`max_ttl` when the answer gave no TTL).
    fn ttl(&self, ttl: Option<u32>) -> Duration {
        let ttl = ttl.map_or(self.max_ttl, |s| Duration::from_secs(u64::from(s)));
        ttl.max(self.min_ttl).min(self.max_ttl)
    }

    /// One resolution of `name`: its SRV records, then their targets' addresses. `Err` is a
    /// failed exchange (network error, timeout, error response code).
    async fn resolve(&self, name: &Name) -> Result<Answer, String> {
        // The namer schedules its own re-resolutions by TTL; answers cached by the resolver
        // would only hide changes (and a cached NXDOMAIN would outlive `minTtl`).
        self.resolver
            .clear_lookup_cache(name.clone(), RecordType::SRV);
        let lookup = match self.resolver.srv_lookup(name.clone()).await {
            Ok(l) => l,
            Err(NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(nr))) => {
                return Ok(Answer::Missing {
                    ttl: nr.negative_ttl,
                })
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut ttl = None::<u32>;
        let mut min_ttl = |t: u32| ttl = Some(ttl.map_or(t, |m| m.min(t)));
        let records: Vec<Srv> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((r.ttl, s)),
                _ => None,
            })
            .map(|(t, s)| {
                min_ttl(t);
                Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_lowercase(),
                }
            })
            .collect();
        if records.is_empty() {
            return Ok(Answer::Missing { ttl: None });
        }
        let (records, mut dropped) = preferred(records);
        // Addresses the server sent along (RFC 2782: "... the additional data section").
        let mut addrs: HashMap<Name, Vec<IpAddr>> = HashMap::new();
        let mut glue_ttl = HashMap::<Name, u32>::new();
        for r in lookup.additionals() {
            if let Some(ip) = r.data.ip_addr() {
                let n = r.name.to_lowercase();
                let t = glue_ttl.entry(n.clone()).or_insert(r.ttl);
                *t = (*t).min(r.ttl);
                addrs.entry(n).or_default().push(ip);
            }
        }
        let mut missing: Vec<Name> = Vec::new();
        for r in &records {
            if r.target.is_root() {
                continue;
            }
            if let Some(t) = glue_ttl.get(&r.target) {
                min_ttl(*t);
            } else if !missing.contains(&r.target) {
                missing.push(r.target.clone());
            }
        }
        let looked_up: Vec<(Name, Vec<IpAddr>, Option<u32>)> = stream::iter(missing)
            .map(|target| self.target_addrs(target))
            .buffer_unordered(TARGET_LOOKUPS)
            .try_collect()
            .await?;
        for (target, ips, t) in looked_up {
            if let Some(t) = t {
                min_ttl(t);
            }
            addrs.insert(target, ips);
        }
        let (addrs, over) = endpoints(&records, &addrs);
        dropped += over;
        Ok(Answer::Found {
            addrs,
            ttl,
            dropped,
        })
    }

    /// The A and AAAA addresses of one SRV target and their shortest TTL; none when the
    /// target has no address records.
    async fn target_addrs(&self, target: Name) -> Result<(Name, Vec<IpAddr>, Option<u32>), String> {
        self.resolver
            .clear_lookup_cache(target.clone(), RecordType::A);
        self.resolver
            .clear_lookup_cache(target.clone(), RecordType::AAAA);
        match self.resolver.lookup_ip(target.clone()).await {
            Ok(l) => {
                let ips = l.iter().collect();
                let ttl = l.as_lookup().answers().iter().map(|r| r.ttl).min();
                Ok((target, ips, ttl))
            }
            Err(e) if e.is_no_records_found() => {
                tracing::debug!(%target, "SRV target has no addresses");
                Ok((target, Vec::new(), None))
            }
            Err(e) => Err(format!("A/AAAA {target}: {e}")),
        }
    }
}

// === pure parts ===

/// The records to use: those of the lowest priority value (RFC 2782), in a stable order (by
/// target, port, weight), at most [`MAX_ENDPOINTS`]; and how many of that priority were cut.
fn preferred(mut records: Vec<Srv>) -> (Vec<Srv>, usize) {
    let Some(lowest) = records.iter().map(|r| r.priority).min() else {
        return (records, 0);
    };
    records.retain(|r| r.priority == lowest);
    records.sort_by(|a, b| (&a.target, a.port, a.weight).cmp(&(&b.target, b.port, b.weight)));
    let dropped = records.len().saturating_sub(MAX_ENDPOINTS);
    records.truncate(MAX_ENDPOINTS);
    (records, dropped)
}

/// The endpoints of `records` given each target's addresses: the port is the record's, the
/// record's weight ([`ZERO_WEIGHT`] for 0) is split evenly over its target's addresses, and
/// the weights of records that give the same address and port add up. Sorted by address, at
/// most [`MAX_ENDPOINTS`]; returns how many were cut.
fn endpoints(records: &[Srv], addrs: &HashMap<Name, Vec<IpAddr>>) -> (Vec<Address>, usize) {
    let mut weights: HashMap<SocketAddr, f64> = HashMap::new();
    for r in records {
        let Some(ips) = addrs.get(&r.target).filter(|ips| !ips.is_empty()) else {
            continue;
        };
        let weight = if r.weight == 0 {
            ZERO_WEIGHT
        } else {
            f64::from(r.weight)
        };
        let share = weight / ips.len() as f64;
        for ip in ips {
            *weights.entry(SocketAddr::new(*ip, r.port)).or_default() += share;
        }
    }
    let mut out: Vec<Address> = weights
        .into_iter()
        .map(|(addr, w)| Address::weighted(addr, w))
        .collect();
    out.sort_by_key(|a| a.addr);
    let dropped = out.len().saturating_sub(MAX_ENDPOINTS);
    out.truncate(MAX_ENDPOINTS);
    (out, dropped)
}

/// A receiver that always holds `r`.
fn fixed(r: Resolution) -> watch::Receiver<Resolution> {
    watch::channel(r).1
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single insert, get or remove: the map stays consistent even
    // if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: Name::from_ascii(target).unwrap(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_lowest_priority_is_used() {
        let (used, dropped) = preferred(vec![
            srv(20, 1, 1, "c.test."),
            srv(10, 5, 2, "b.test."),
            srv(10, 5, 1, "a.test."),
        ]);
        assert_eq!(dropped, 0);
        assert_eq!(used, [srv(10, 5, 1, "a.test."), srv(10, 5, 2, "b.test.")]);
        assert_eq!(preferred(vec![]), (vec![], 0));
    }

    #[test]
    fn weights_split_over_addresses_and_zero_is_small() {
        let records = [
            srv(0, 10, 80, "two.test."),
            srv(0, 0, 81, "one.test."),
            srv(0, 5, 82, "none.test."),
            srv(0, 5, 83, "."),
        ];
        let addrs = HashMap::from([
            (
                Name::from_ascii("two.test.").unwrap(),
                vec![ip("10.0.0.1"), ip("::1")],
            ),
            (Name::from_ascii("one.test.").unwrap(), vec![ip("10.0.0.2")]),
            (Name::from_ascii("none.test.").unwrap(), vec![]),
        ]);
        let (eps, dropped) = endpoints(&records, &addrs);
        assert_eq!(dropped, 0);
        let got: Vec<(String, f64)> = eps.iter().map(|a| (a.addr.to_string(), a.weight)).collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:80".to_owned(), 5.0),
                ("10.0.0.2:81".to_owned(), ZERO_WEIGHT),
                ("[::1]:80".to_owned(), 5.0),
            ]
        );
    }

    #[test]
    fn same_address_adds_up() {
        let records = [srv(0, 3, 80, "a.test."), srv(0, 4, 80, "b.test.")];
        let addrs = HashMap::from([
            (Name::from_ascii("a.test.").unwrap(), vec![ip("10.0.0.1")]),
            (Name::from_ascii("b.test.").unwrap(), vec![ip("10.0.0.1")]),
        ]);
        let (eps, _) = endpoints(&records, &addrs);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].weight, 7.0);
    }

    #[test]
    fn huge_answers_are_cut() {
        let records: Vec<Srv> = (0..10_000u32)
            .map(|i| srv(0, 1, (i % 60_000) as u16 + 1, &format!("h{i}.test.")))
            .collect();
        let (used, dropped) = preferred(records);
        assert_eq!((used.len(), dropped), (MAX_ENDPOINTS, 9_000));
        let addrs: HashMap<Name, Vec<IpAddr>> = used
            .iter()
            .map(|r| (r.target.clone(), vec![ip("10.0.0.1"), ip("10.0.0.2")]))
            .collect();
        let (eps, dropped) = endpoints(&used, &addrs);
        assert_eq!((eps.len(), dropped), (MAX_ENDPOINTS, MAX_ENDPOINTS));
    }

    #[test]
    fn ttl_is_clamped() {
        let config = DnsSrvConfig {
            dns_hosts: vec!["127.0.0.1:1".parse().unwrap()],
            min_ttl: Duration::from_secs(2),
            max_ttl: Duration::from_secs(10),
            backoff: Default::default(),
        };
        let namer = DnsSrvNamer::new(&config, &Path::read("/#/dnssrv").unwrap()).unwrap();
        let i = &namer.inner;
        assert_eq!(i.ttl(Some(0)), Duration::from_secs(2));
        assert_eq!(i.ttl(Some(5)), Duration::from_secs(5));
        assert_eq!(i.ttl(Some(3600)), Duration::from_secs(10));
        assert_eq!(i.ttl(None), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn malformed_paths() {
        let config = DnsSrvConfig {
            dns_hosts: vec!["127.0.0.1:1".parse().unwrap()],
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(60),
            backoff: Default::default(),
        };
        let namer = DnsSrvNamer::new(&config, &Path::read("/#/dnssrv").unwrap()).unwrap();
        assert_eq!(*namer.lookup(&Path::empty()).borrow(), Resolution::Neg);
        let bad = Path::from_labels([&b"\xff\xfe"[..]]);
        let r = namer.lookup(&bad).borrow().clone();
        assert!(
            matches!(&r, Resolution::Failed(m) if m.contains("not UTF-8")),
            "{r:?}"
        );
        let long = Path::from_labels([&[b'a'; 300][..]]);
        let r = namer.lookup(&long).borrow().clone();
        assert!(
            matches!(&r, Resolution::Failed(m) if m.contains("not a valid DNS name")),
            "{r:?}"
        );
        assert_eq!(namer.status().unwrap().snapshot().watched, 0);
    }
}
