//! Transformers: rewrite a namer's bound addresses ([`Transformer`], [`Transformed`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::{Address, BoundName, NameTree, Namer, NamerStatus, Path, Resolution};

/// One rewrite of a bound address set (Linkerd 1 transformers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transformer {
    /// Replace every address's port, e.g. to send to the peer proxy's inbound port
    /// (linker-to-linker). Addresses that become identical are merged (first weight wins).
    /// Id prefix: `/%/port/<port>`.
    Port(u16),
    /// Keep only addresses of this host: loopback addresses and the addresses of the local
    /// network interfaces. Id prefix: `/%/localhost`.
    Localhost,
    /// Keep only the addresses of one host, e.g. the node this proxy runs on (Linkerd 1's
    /// `io.l5d.specificHost`). Id prefix: `/%/specificHost/<ip>`.
    SpecificHost(IpAddr),
    /// Every bound name becomes this path, which is bound again; Neg stays Neg, so a namer can
    /// check that a name exists while the traffic goes elsewhere (Linkerd 1's `io.l5d.replace`).
    Replace(Path),
    /// Always this path, bound again, whatever the namer said (also for Neg, pending and
    /// failures): Linkerd 1's `io.l5d.const`.
    Const(Path),
}

/// A [`Namer`] that applies transformers, in order, to another namer's bound addresses.
///
/// The bound id gets each transformer's prefix in front, the last transformer outermost:
/// `Port(4143)` over `/#/fs/rates` gives `/%/port/4143/#/fs/rates`. A filtering transformer
/// (`Localhost`) that leaves no address (also when the set was empty to begin with) turns the
/// result into [`Resolution::Neg`]. Other resolutions (pending, Neg, failures and delegations) pass
/// through unchanged.
#[derive(Clone)]
pub struct Transformed {
    inner: Arc<dyn Namer>,
    transformers: Arc<[Transformer]>,
}

impl Transformer {
    /// The id prefix this transformer adds, e.g. `/%/port/4143`.
    pub fn prefix(&self) -> Path {
        match self {
            Transformer::Port(port) => {
                Path::from_labels(["%".to_string(), "port".to_string(), port.to_string()])
            }
            Transformer::Localhost => Path::from_labels(["%", "localhost"]),
            Transformer::SpecificHost(ip) => {
                Path::from_labels(["%".to_string(), "specificHost".to_string(), ip.to_string()])
            }
            Transformer::Replace(_) => Path::from_labels(["%", "replace"]),
            Transformer::Const(_) => Path::from_labels(["%", "const"]),
        }
    }

    /// Applies the transformer to a bound name; `None` when nothing is left.
    fn apply(&self, b: &BoundName, local: &dyn Fn() -> HashSet<IpAddr>) -> Option<BoundName> {
        let id = self.prefix().concat(&b.id);
        match self {
            Transformer::Port(port) => {
                let mut addrs: Vec<Address> = Vec::with_capacity(b.addrs.len());
                for a in b.addrs.iter() {
                    let mut a = a.clone();
                    a.addr.set_port(*port);
                    if !addrs.iter().any(|x| x.addr == a.addr) {
                        addrs.push(a);
                    }
                }
                Some(BoundName::new(id, addrs))
            }
            Transformer::Localhost => {
                let local = local();
                let addrs: Vec<Address> = b
                    .addrs
                    .iter()
                    .filter(|a| a.addr.ip().is_loopback() || local.contains(&a.addr.ip()))
                    .cloned()
                    .collect();
                (!addrs.is_empty()).then(|| BoundName::new(id, addrs))
            }
            Transformer::SpecificHost(ip) => {
                let addrs: Vec<Address> = b
                    .addrs
                    .iter()
                    .filter(|a| a.addr.ip() == *ip)
                    .cloned()
                    .collect();
                (!addrs.is_empty()).then(|| BoundName::new(id, addrs))
            }
            // Rewrites, handled in `Transformed::transform` before this is reached.
            Transformer::Replace(_) | Transformer::Const(_) => Some(b.clone()),
        }
    }
}

impl Transformed {
    /// Wraps `inner`, applying `transformers` in order to everything it binds.
    pub fn new(inner: Arc<dyn Namer>, transformers: Vec<Transformer>) -> Transformed {
        Transformed {
            inner,
            transformers: transformers.into(),
        }
    }

    fn transform(&self, r: &Resolution) -> Resolution {
        let mut r = r.clone();
        for t in self.transformers.iter() {
            r = match (t, r) {
                (Transformer::Const(path), _) => Resolution::Delegate(NameTree::Leaf(path.clone())),
                (Transformer::Replace(path), Resolution::Bound(_)) => {
                    Resolution::Delegate(NameTree::Leaf(path.clone()))
                }
                (_, Resolution::Bound(b)) => match t.apply(&b, &local_ips) {
                    Some(next) => Resolution::Bound(next),
                    None => Resolution::Neg,
                },
                (_, other) => other,
            };
        }
        r
    }
}

impl Namer for Transformed {
    /// Looks the name up in the inner namer and keeps a transformed copy up to date (a task
    /// per lookup, which ends when the returned receiver is dropped). Outside a tokio runtime
    /// the result is a one-off snapshot.
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let mut inner_rx = self.inner.lookup(residual);
        let first = self.transform(&inner_rx.borrow_and_update());
        let (tx, rx) = watch::channel(first);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return rx;
        };
        let this = self.clone();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    changed = inner_rx.changed() => {
                        if changed.is_err() {
                            return; // the inner namer stopped updating: keep the last value
                        }
                    }
                    () = tx.closed() => return,
                }
                let next = this.transform(&inner_rx.borrow_and_update());
                tx.send_if_modified(|cur| {
                    let changed = *cur != next;
                    if changed {
                        *cur = next;
                    }
                    changed
                });
            }
        });
        rx
    }

    fn status(&self) -> Option<NamerStatus> {
        self.inner.status()
    }
}

/// The addresses of this host's network interfaces (empty if they cannot be listed).
fn local_ips() -> HashSet<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces; only loopback is local");
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    /// A namer with one service `/rates` whose resolution the test controls.
    struct One(watch::Sender<Resolution>);

    impl Namer for One {
        fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
            if *residual == p("/rates") {
                self.0.subscribe()
            } else {
                watch::channel(Resolution::Neg).1
            }
        }
    }

    fn bound(addrs: &[&str]) -> Resolution {
        let addrs: Vec<Address> = addrs
            .iter()
            .map(|a| Address::new(a.parse::<SocketAddr>().unwrap()))
            .collect();
        Resolution::Bound(BoundName::new(p("/#/fs/rates"), addrs))
    }

    fn setup(ts: Vec<Transformer>, r: Resolution) -> (watch::Sender<Resolution>, Transformed) {
        let (tx, _) = watch::channel(r);
        let namer = Transformed::new(Arc::new(One(tx.clone())), ts);
        (tx, namer)
    }

    fn snapshot(namer: &Transformed) -> Resolution {
        namer.lookup(&p("/rates")).borrow().clone()
    }

    #[tokio::test]
    async fn port_replaces_every_port_and_prefixes_the_id() {
        let (_, namer) = setup(
            vec![Transformer::Port(4143)],
            bound(&["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.1:9090"]),
        );
        assert_eq!(
            snapshot(&namer),
            Resolution::Bound(BoundName::new(
                p("/%/port/4143/#/fs/rates"),
                vec![
                    Address::new("10.0.0.1:4143".parse().unwrap()),
                    Address::new("10.0.0.2:4143".parse().unwrap()),
                ]
            ))
        );
        // Port filters nothing away: an empty set stays bound and empty.
        let (_, namer) = setup(vec![Transformer::Port(1)], bound(&[]));
        assert!(matches!(snapshot(&namer), Resolution::Bound(b) if b.addrs.is_empty()));
    }

    #[tokio::test]
    async fn localhost_keeps_only_local_addresses() {
        let local = local_ips().into_iter().find(|ip| !ip.is_loopback());
        let mut addrs = vec!["127.0.0.1:1".to_string(), "192.0.2.7:2".to_string()];
        if let Some(ip) = local {
            addrs.push(SocketAddr::new(ip, 3).to_string());
        }
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let (_, namer) = setup(vec![Transformer::Localhost], bound(&refs));
        let Resolution::Bound(b) = snapshot(&namer) else {
            panic!()
        };
        assert_eq!(b.id, p("/%/localhost/#/fs/rates"));
        let ports: Vec<u16> = b.addrs.iter().map(|a| a.addr.port()).collect();
        assert_eq!(ports, if local.is_some() { vec![1, 3] } else { vec![1] });

        let (_, namer) = setup(vec![Transformer::Localhost], bound(&["192.0.2.7:2"]));
        assert_eq!(snapshot(&namer), Resolution::Neg, "filtered away is Neg");
    }

    #[tokio::test]
    async fn specific_host_keeps_one_host() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let (_, namer) = setup(
            vec![Transformer::SpecificHost(ip)],
            bound(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.2:81"]),
        );
        let Resolution::Bound(b) = snapshot(&namer) else {
            panic!()
        };
        assert_eq!(b.id, p("/%/specificHost/10.0.0.2/#/fs/rates"));
        assert_eq!(b.addrs.len(), 2);
        let (_, namer) = setup(vec![Transformer::SpecificHost(ip)], bound(&["10.0.0.1:80"]));
        assert_eq!(snapshot(&namer), Resolution::Neg);
    }

    #[tokio::test]
    async fn replace_keeps_neg_and_const_does_not() {
        let to = p("/$/inet/127.0.0.1/4140");
        let delegate = Resolution::Delegate(NameTree::Leaf(to.clone()));
        let (tx, namer) = setup(
            vec![Transformer::Replace(to.clone())],
            bound(&["10.0.0.1:80"]),
        );
        assert_eq!(snapshot(&namer), delegate);
        tx.send_replace(Resolution::Neg);
        assert_eq!(snapshot(&namer), Resolution::Neg);
        tx.send_replace(Resolution::Pending);
        assert_eq!(snapshot(&namer), Resolution::Pending);
        let (tx, namer) = setup(vec![Transformer::Const(to.clone())], Resolution::Neg);
        assert_eq!(snapshot(&namer), delegate);
        tx.send_replace(Resolution::Failed("down".into()));
        assert_eq!(snapshot(&namer), delegate);
    }

    #[tokio::test]
    async fn transformers_apply_in_order_and_follow_updates() {
        let ts = vec![Transformer::Localhost, Transformer::Port(7)];
        let (tx, namer) = setup(ts, Resolution::Pending);
        let mut rx = namer.lookup(&p("/rates"));
        assert_eq!(*rx.borrow_and_update(), Resolution::Pending);
        tx.send_replace(bound(&["127.0.0.1:80", "192.0.2.1:80"]));
        let wait = rx.wait_for(|r| matches!(r, Resolution::Bound(_)));
        let r = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap()
            .unwrap()
            .clone();
        assert_eq!(
            r,
            Resolution::Bound(BoundName::new(
                p("/%/port/7/%/localhost/#/fs/rates"),
                vec![Address::new("127.0.0.1:7".parse().unwrap())]
            ))
        );
        tx.send_replace(Resolution::Failed("boom".into()));
        let wait = rx.wait_for(|r| matches!(r, Resolution::Failed(_)));
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap()
            .unwrap();
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), async {
            while tx.receiver_count() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("forwarding task ends with its receiver");
        assert_eq!(snapshot(&namer), Resolution::Failed("boom".into()));
    }
}
