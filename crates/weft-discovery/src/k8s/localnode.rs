//! `k8s.localnode`: keep only the endpoints on this proxy's node.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;
use weft_config::LocalnodeConfig;
use weft_naming::{BoundName, Namer, NamerStatus, Path, Resolution};

use super::{forward, same_subnet};
use crate::DiscoveryError;

/// What "this node" is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Local {
    /// The node's name (`hostNetwork`): endpoints whose node is this one.
    Node(Box<str>),
    /// This pod's IP: endpoints in its /24 (IPv4) or /64 (IPv6).
    Subnet(IpAddr),
}

/// The namer behind a `k8s.localnode` transformer.
struct Localnode {
    inner: Arc<dyn Namer>,
    local: Arc<Local>,
}

/// `kind: k8s.localnode` (alias `io.l5d.k8s.localnode`) around `inner`: keeps only the
/// endpoints on this node, as Linkerd 1 did. With `hostNetwork` an endpoint is local when its
/// node (the `k8s` namer's `nodeName`) equals `$NODE_NAME`; otherwise when its IP is in the
/// same /24 (IPv4; /64 for IPv6) as `$POD_IP` (both usually set from the downward API). A
/// bound name with no local endpoint becomes [`Resolution::Neg`]; the id gets
/// `/%/k8s.localnode` in front. Other resolutions pass through; changes stay live.
///
/// # Errors
/// The environment variable it needs is unset, empty, or (`POD_IP`) not an IP address.
pub fn localnode(
    inner: Arc<dyn Namer>,
    config: &LocalnodeConfig,
    prefix: &Path,
) -> Result<Arc<dyn Namer>, DiscoveryError> {
    let local = local_from(config.host_network, |k| std::env::var(k).ok())
        .map_err(|m| DiscoveryError::new(prefix, format!("k8s.localnode: {m}")))?;
    Ok(Arc::new(Localnode {
        inner,
        local: Arc::new(local),
    }))
}

fn local_from(host_network: bool, env: impl Fn(&str) -> Option<String>) -> Result<Local, String> {
    let var = if host_network { "NODE_NAME" } else { "POD_IP" };
    let value = env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the environment variable {var} is not set"))?;
    if host_network {
        return Ok(Local::Node(value.into()));
    }
    value
        .parse()
        .map(Local::Subnet)
        .map_err(|_| format!("{var}={value:?} is not an IP address"))
}

impl Namer for Localnode {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let local = self.local.clone();
        forward(self.inner.lookup(residual), None, move |r, _| {
            keep_local(r, &local)
        })
    }

    fn status(&self) -> Option<NamerStatus> {
        self.inner.status()
    }
}

fn keep_local(r: &Resolution, local: &Local) -> Resolution {
    let Resolution::Bound(b) = r else {
        return r.clone();
    };
    let addrs: Vec<_> = b
        .addrs
        .iter()
        .filter(|a| match local {
            Local::Node(n) => a.node() == Some(&**n),
            Local::Subnet(ip) => same_subnet(a.addr.ip(), *ip),
        })
        .cloned()
        .collect();
    if addrs.is_empty() {
        return Resolution::Neg;
    }
    let id = Path::from_labels(["%", "k8s.localnode"]).concat(&b.id);
    Resolution::Bound(BoundName::new(id, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_naming::{Address, AddressMeta};

    fn addr(ip: &str, node: &str) -> Address {
        Address::new(format!("{ip}:80").parse().unwrap()).with_meta(AddressMeta {
            node: Some(node.into()),
            ..AddressMeta::default()
        })
    }

    #[test]
    fn environment_is_required() {
        let none = |_: &str| None;
        assert!(local_from(true, none).unwrap_err().contains("NODE_NAME"));
        assert!(local_from(false, none).unwrap_err().contains("POD_IP"));
        let bad = |_: &str| Some("nope".to_string());
        assert!(local_from(false, bad).unwrap_err().contains("not an IP"));
        let node = |k: &str| (k == "NODE_NAME").then(|| "n1".to_string());
        assert_eq!(local_from(true, node), Ok(Local::Node("n1".into())));
    }

    #[test]
    fn keeps_endpoints_of_this_node() {
        let id = Path::read("/#/k8s/default/http/web").unwrap();
        let r = Resolution::Bound(BoundName::new(
            id,
            vec![
                addr("10.1.1.5", "n1"),
                addr("10.1.2.5", "n2"),
                addr("10.1.1.9", "n2"),
            ],
        ));
        let ips = |r: Resolution| match r {
            Resolution::Bound(b) => {
                assert_eq!(b.id.to_string(), "/%/k8s.localnode/#/k8s/default/http/web");
                b.addrs
                    .iter()
                    .map(|a| a.addr.ip().to_string())
                    .collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(ips(keep_local(&r, &Local::Node("n1".into()))), ["10.1.1.5"]);
        let subnet = Local::Subnet("10.1.1.200".parse().unwrap());
        assert_eq!(ips(keep_local(&r, &subnet)), ["10.1.1.5", "10.1.1.9"]);
        assert_eq!(keep_local(&r, &Local::Node("n3".into())), Resolution::Neg);
        assert_eq!(
            keep_local(&Resolution::Pending, &subnet),
            Resolution::Pending
        );
    }
}
