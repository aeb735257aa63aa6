//! [`InetNamer`]: the built-in `/$/inet/<host>/<port>` namer (fixed IPs and DNS).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::watch;

use crate::{publish_if_changed, wait_or_unwatched, Address, BoundName, Namer, Path, Resolution};

/// Shortest and longest time between re-resolutions, whatever the record TTLs say.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(60);
/// Retry delays after a failed lookup (doubling from min to max).
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `/$/inet` namer: the residual `/<host>/<port>` names a host and a TCP port (further
/// labels are ignored).
///
/// An IP literal (`/$/inet/127.0.0.1/8080`, `/$/inet/::1/8080`) binds at once to that one
/// address. A host name is resolved (A and AAAA) with the system resolver configuration
/// (`/etc/resolv.conf`, `/etc/hosts`; public defaults if that cannot be read) and re-resolved
/// when the records' TTL runs out (at least every 60 s, at most every second). A failed
/// re-resolution keeps the last good set and retries with backoff (1 s doubling to 30 s); with
/// no good set yet the name is Neg for a non-existent host and [`Resolution::Failed`] for
/// other errors. A bad port is [`Resolution::Failed`]; fewer than two labels is Neg. The id is
/// `/$/inet/<host>/<port>`.
///
/// One resolution task runs per host and port while anyone watches it.
#[derive(Clone, Default)]
pub struct InetNamer {
    inner: Arc<Inner>,
}

/// A host name and a port.
type HostPort = (Box<str>, u16);

#[derive(Default)]
struct Inner {
    resolver: OnceLock<Result<TokioResolver, Arc<str>>>,
    names: Mutex<HashMap<HostPort, watch::Sender<Resolution>>>,
}

impl InetNamer {
    /// A namer with no lookups running yet; the DNS resolver is created on the first host name.
    pub fn new() -> InetNamer {
        InetNamer::default()
    }
}

impl Namer for InetNamer {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let (Some(host), Some(port)) = (residual.label(0), residual.label(1)) else {
            return fixed(Resolution::Neg);
        };
        let id = Path::from_labels([&b"$"[..], b"inet", host, port]);
        let (Ok(host), Some(port)) = (
            std::str::from_utf8(host),
            std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u16>().ok()),
        ) else {
            return fixed(Resolution::Failed(
                format!("{id}: expected /$/inet/<host>/<port> with a port in 0..65535").into(),
            ));
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            let addr = Address::new(SocketAddr::new(ip, port));
            return fixed(Resolution::Bound(BoundName::new(id, vec![addr])));
        }
        let mut names = lock(&self.inner.names);
        let key = (Box::<str>::from(host), port);
        if let Some(tx) = names.get(&key) {
            return tx.subscribe();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return fixed(Resolution::Failed(
                "DNS lookups need a tokio runtime".into(),
            ));
        };
        let (tx, rx) = watch::channel(Resolution::Pending);
        names.insert(key.clone(), tx.clone());
        runtime.spawn(resolve(self.inner.clone(), key, id, tx));
        rx
    }
}

/// A receiver that always holds `r`.
fn fixed(r: Resolution) -> watch::Receiver<Resolution> {
    watch::channel(r).1
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every critical section is a single
    // insert, get or remove.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn resolver(&self) -> Result<&TokioResolver, Arc<str>> {
        let r = self.resolver.get_or_init(|| {
            // No silent fallback to public resolvers: a proxy must not send its service
            // names to DNS servers the operator did not configure.
            let builder = TokioResolver::builder_tokio().map_err(|e| {
                tracing::warn!(error = %e, "cannot read the system DNS configuration");
                Arc::<str>::from(format!("cannot read the system DNS configuration: {e}"))
            })?;
            builder
                .build()
                .map_err(|e| format!("cannot create a DNS resolver: {e}").into())
        });
        r.as_ref().map_err(Arc::clone)
    }
}

/// Keeps `tx` up to date with the addresses of `host`, until nobody watches any more.
async fn resolve(inner: Arc<Inner>, key: HostPort, id: Path, tx: watch::Sender<Resolution>) {
    let (host, port) = (&*key.0, key.1);
    let mut backoff = MIN_BACKOFF;
    loop {
        let wait = match inner.resolver() {
            Err(e) => {
                tx.send_replace(Resolution::Failed(e));
                MAX_BACKOFF
            }
            Ok(resolver) => {
                let result = tokio::select! {
                    r = resolver.lookup_ip(host) => r,
                    () = tx.closed() => Err(hickory_resolver::net::NetError::Message("unwatched")),
                };
                match result {
                    Ok(lookup) => {
                        let mut addrs: Vec<Address> = lookup
                            .iter()
                            .map(|ip| Address::new(SocketAddr::new(ip, port)))
                            .collect();
                        addrs.sort_by_key(|a| a.addr);
                        addrs.dedup();
                        let bound = Resolution::Bound(BoundName::new(id.clone(), addrs));
                        publish_if_changed(&tx, bound);
                        backoff = MIN_BACKOFF;
                        // The shortest TTL among the answers (in seconds).
                        let ttl = lookup.as_lookup().answers().iter().map(|r| r.ttl).min();
                        let ttl = Duration::from_secs(ttl.map_or(MAX_TTL.as_secs(), u64::from));
                        ttl.clamp(MIN_TTL, MAX_TTL)
                    }
                    Err(_) if tx.is_closed() => Duration::ZERO,
                    Err(e) => {
                        let has_good = matches!(*tx.borrow(), Resolution::Bound(_));
                        tracing::warn!(%id, error = %e, keeping_last_good = has_good, "DNS lookup failed");
                        if !has_good {
                            let r = if e.is_no_records_found() {
                                Resolution::Neg
                            } else {
                                Resolution::Failed(
                                    format!("DNS lookup of {host} failed: {e}").into(),
                                )
                            };
                            publish_if_changed(&tx, r);
                        }
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                }
            }
        };
        if wait_or_unwatched(&tx, wait, &inner.names, &key).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settled(mut rx: watch::Receiver<Resolution>) -> Resolution {
        let wait = rx.wait_for(|r| *r != Resolution::Pending);
        let r = tokio::time::timeout(Duration::from_secs(10), wait).await;
        r.expect("resolution within 10s")
            .expect("namer alive")
            .clone()
    }

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    #[tokio::test]
    async fn ip_literal_binds_at_once() {
        let namer = InetNamer::new();
        let r = namer.lookup(&p("/127.0.0.1/8080")).borrow().clone();
        let Resolution::Bound(b) = r else {
            panic!("{r:?}")
        };
        assert_eq!(b.id, p("/$/inet/127.0.0.1/8080"));
        assert_eq!(*b.addrs, [Address::new("127.0.0.1:8080".parse().unwrap())]);
        let r = namer.lookup(&p("/::1/443/extra")).borrow().clone();
        let Resolution::Bound(b) = r else {
            panic!("{r:?}")
        };
        assert_eq!(b.addrs[0].addr, "[::1]:443".parse().unwrap());
    }

    #[tokio::test]
    async fn malformed_paths() {
        let namer = InetNamer::new();
        assert_eq!(*namer.lookup(&p("/127.0.0.1")).borrow(), Resolution::Neg);
        assert_eq!(*namer.lookup(&Path::empty()).borrow(), Resolution::Neg);
        let r = namer.lookup(&p("/127.0.0.1/http")).borrow().clone();
        assert!(matches!(r, Resolution::Failed(m) if m.contains("/$/inet/127.0.0.1/http")));
        let r = namer.lookup(&p("/127.0.0.1/70000")).borrow().clone();
        assert!(matches!(r, Resolution::Failed(_)));
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let namer = InetNamer::new();
        let rx = namer.lookup(&p("/localhost/8080"));
        let second = namer.lookup(&p("/localhost/8080"));
        assert_eq!(
            lock(&namer.inner.names).len(),
            1,
            "one task per host and port"
        );
        let Resolution::Bound(b) = settled(rx).await else {
            panic!()
        };
        assert_eq!(b.id, p("/$/inet/localhost/8080"));
        assert!(
            b.addrs
                .iter()
                .any(|a| a.addr.ip().is_loopback() && a.addr.port() == 8080),
            "{b:?}"
        );
        assert!(matches!(settled(second).await, Resolution::Bound(_)));
    }

    #[tokio::test]
    async fn task_ends_when_unwatched() {
        let namer = InetNamer::new();
        let rx = namer.lookup(&p("/localhost/1"));
        settled(rx).await;
        // The receiver is dropped; the task notices and removes its entry.
        let gone = async {
            while !lock(&namer.inner.names).is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .unwrap();
    }
}
