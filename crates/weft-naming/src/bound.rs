//! Bound names: what binding produces, and the per-request weighted pick.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::{NameTree, Path};

/// One endpoint of a bound name.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight for load balancing among the set (`1.0` unless a namer says otherwise,
    /// e.g. `host port * weight` lines of the fs namer).
    pub weight: f64,
    /// What the namer knows about this endpoint beyond where it is (node, authority); `None`
    /// for most namers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Arc<AddressMeta>>,
}

/// Facts a discovery backend gives about one endpoint, carried with its address.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AddressMeta {
    /// The node (host machine) the endpoint runs on: Kubernetes `nodeName`, Consul `Node`,
    /// Marathon task `host`. The `k8s.daemonset` and `k8s.localnode` transformers read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Box<str>>,
    /// The authority (`Host` / `:authority`) requests to this endpoint should carry, e.g.
    /// `web.service.dc1.consul` from the consul namer's `setHost` (Linkerd 1 did the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<Box<str>>,
    /// Free-form labels from the backend (Consul service `Meta`, Kubernetes endpoint
    /// `zone` / `hostname`), sorted by key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(Box<str>, Box<str>)>,
}

/// A live snapshot of a bound name's endpoints; cheap to clone and share.
pub type AddrSet = Arc<[Address]>;

/// A name a namer recognised, with its current endpoints.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BoundName {
    /// The bound id, e.g. `/#/fs/rates`, `/$/inet/localhost/8080` or `/%/port/4143/#/fs/rates`.
    /// Clients (connection pools, balancers, metrics' `client` label) are keyed by it.
    pub id: Path,
    /// The endpoints; may be empty (the service exists but has no instances right now).
    pub addrs: AddrSet,
}

/// A bound tree: after binding there is no `Alt` left, only `Neg`, `Fail`, `Empty`, `Leaf`
/// and `Union`.
pub type BoundTree = NameTree<BoundName>;

/// The result of [`BoundTree::sample`] for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampled<'a> {
    /// Send to this name (its address set may be empty; the caller decides what that means).
    Bound(&'a BoundName),
    /// No such name.
    Neg,
    /// The binding failed.
    Fail,
    /// The name exists but has no addresses.
    Empty,
}

impl BoundName {
    /// A bound name from an id and addresses.
    pub fn new(id: Path, addrs: impl Into<AddrSet>) -> BoundName {
        BoundName {
            id,
            addrs: addrs.into(),
        }
    }
}

impl Address {
    /// An address with weight `1.0`.
    pub fn new(addr: SocketAddr) -> Address {
        Address {
            addr,
            weight: 1.0,
            meta: None,
        }
    }

    /// An address with a weight (negative, NaN or infinite weights become `0.0`: no traffic).
    pub fn weighted(addr: SocketAddr, weight: f64) -> Address {
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            0.0
        };
        Address {
            addr,
            weight,
            meta: None,
        }
    }

    /// This address with `meta` attached.
    pub fn with_meta(mut self, meta: AddressMeta) -> Address {
        self.meta = Some(Arc::new(meta));
        self
    }

    /// The node the endpoint runs on, if its namer said.
    pub fn node(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.node.as_deref())
    }
}

impl NameTree<BoundName> {
    /// Picks the name for one request: walks down the tree, choosing one branch of each union
    /// at random in proportion to the weights.
    ///
    /// `rand01` returns uniform numbers in `[0, 1)` (e.g. `fastrand::f64`); it is called once
    /// per union on the way down. A union whose weights are all zero picks uniformly. An `Alt`
    /// (which a tree from the binder never contains) yields its first non-Neg branch.
    pub fn sample(&self, mut rand01: impl FnMut() -> f64) -> Sampled<'_> {
        sample(self, &mut rand01)
    }
}

fn sample<'a>(tree: &'a BoundTree, rand01: &mut dyn FnMut() -> f64) -> Sampled<'a> {
    match tree {
        NameTree::Neg => Sampled::Neg,
        NameTree::Fail => Sampled::Fail,
        NameTree::Empty => Sampled::Empty,
        NameTree::Leaf(b) => Sampled::Bound(b),
        NameTree::Alt(ts) => ts
            .iter()
            .map(|t| sample(t, rand01))
            .find(|s| *s != Sampled::Neg)
            .unwrap_or(Sampled::Neg),
        NameTree::Union(ws) => {
            let Some(last) = ws.last() else {
                return Sampled::Neg;
            };
            let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
            let total: f64 = ws.iter().map(|w| weight(w.weight)).sum();
            let r = rand01().clamp(0.0, 1.0);
            if !(total > 0.0 && total.is_finite()) {
                let i = ((r * ws.len() as f64) as usize).min(ws.len() - 1);
                return sample(&ws[i].tree, rand01);
            }
            let mut point = r * total;
            for w in ws {
                let w_ = weight(w.weight);
                if w_ > 0.0 && point < w_ {
                    return sample(&w.tree, rand01);
                }
                point -= w_;
            }
            // Rounding, or r == 1.0: the last branch with a positive weight.
            let branch = ws
                .iter()
                .rev()
                .find(|w| weight(w.weight) > 0.0)
                .unwrap_or(last);
            sample(&branch.tree, rand01)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Weighted;

    fn name(id: &str) -> BoundTree {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        NameTree::Leaf(BoundName::new(
            Path::read(id).unwrap(),
            vec![Address::new(addr)],
        ))
    }

    fn id(s: Sampled<'_>) -> String {
        match s {
            Sampled::Bound(b) => b.id.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn samples_in_proportion_to_weights() {
        let t = NameTree::Union(vec![
            Weighted {
                weight: 9.0,
                tree: name("/a"),
            },
            Weighted {
                weight: 1.0,
                tree: name("/b"),
            },
        ]);
        assert_eq!(id(t.sample(|| 0.0)), "/a");
        assert_eq!(id(t.sample(|| 0.89)), "/a");
        assert_eq!(id(t.sample(|| 0.9)), "/b");
        assert_eq!(id(t.sample(|| 1.0)), "/b");
        let mut rng = fastrand::Rng::with_seed(7);
        let a = (0..10_000)
            .filter(|_| id(t.sample(|| rng.f64())) == "/a")
            .count();
        assert!((8_700..9_300).contains(&a), "{a}");
    }

    #[test]
    fn samples_nested_and_degenerate_unions() {
        let zero = NameTree::Union(vec![
            Weighted {
                weight: 0.0,
                tree: name("/a"),
            },
            Weighted {
                weight: 0.0,
                tree: name("/b"),
            },
        ]);
        assert_eq!(id(zero.sample(|| 0.7)), "/b");
        let skip_zero = NameTree::Union(vec![
            Weighted {
                weight: 1.0,
                tree: name("/a"),
            },
            Weighted {
                weight: 0.0,
                tree: name("/b"),
            },
        ]);
        assert_eq!(id(skip_zero.sample(|| 1.0)), "/a");
        let nested = NameTree::Union(vec![
            Weighted {
                weight: 1.0,
                tree: NameTree::Fail,
            },
            Weighted {
                weight: 1.0,
                tree: NameTree::Union(vec![Weighted::new(name("/c"))]),
            },
        ]);
        let mut draws = [0.6, 0.0].into_iter();
        assert_eq!(id(nested.sample(|| draws.next().unwrap())), "/c");
        assert_eq!(nested.sample(|| 0.1), Sampled::Fail);
        assert_eq!(BoundTree::Union(vec![]).sample(|| 0.5), Sampled::Neg);
        assert_eq!(BoundTree::Empty.sample(|| 0.5), Sampled::Empty);
        let alt = NameTree::Alt(vec![NameTree::Neg, name("/d")]);
        assert_eq!(id(alt.sample(|| 0.5)), "/d");
    }
}
