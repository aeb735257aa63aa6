//! `k8s.daemonset`: send to the DaemonSet pod on each endpoint's node instead of the
//! endpoint itself (the per-node proxy pattern of Linkerd 1).

use std::sync::Arc;

use tokio::sync::watch;
use weft_config::{DaemonsetConfig, DiscoveryBackoff, K8sApi, K8sConfig};
use weft_naming::{Address, BoundName, Namer, NamerStatus, Path, Resolution};

use super::{dns_name, forward, same_subnet, K8sNamer};
use crate::DiscoveryError;

/// The namer behind a `k8s.daemonset` transformer.
struct Daemonset {
    inner: Arc<dyn Namer>,
    /// Watches the DaemonSet's service, as the `k8s` namer does.
    daemons: K8sNamer,
    /// `/<namespace>/<port>/<service>` of the DaemonSet's service.
    daemons_path: Path,
    /// `/%/k8s.daemonset/<namespace>/<port>/<service>`.
    id_prefix: Path,
    host_network: bool,
}

/// `kind: k8s.daemonset` (alias `io.l5d.k8s.daemonset`) around `inner`: every endpoint of a
/// bound name is replaced by the DaemonSet pod on the same node, so traffic goes to the
/// per-node proxy there, as Linkerd 1 did.
///
/// The DaemonSet's endpoints are the EndpointSlices of `service` in `namespace` on `port` (a
/// name or number), watched like the `k8s` namer's names (ready endpoints only; same
/// failure handling, default backoff). With `hostNetwork`, an endpoint's DaemonSet pod is
/// the one whose node (`nodeName`) is the endpoint's node; otherwise the one whose IP is in
/// the endpoint's /24 (IPv4; /64 for IPv6). Endpoints with no DaemonSet pod on their node are
/// dropped; pods serving several endpoints appear once (the first endpoint's weight). A name
/// left with no address is [`Resolution::Neg`]. The id gets
/// `/%/k8s.daemonset/<namespace>/<port>/<service>` in front. While the DaemonSet's endpoints
/// are pending, failed or absent, bound names are pending, failed or Neg. Both the inner
/// name and the DaemonSet's endpoints stay live.
///
/// # Errors
/// A namespace or service that is not a DNS name, an empty port, or no Kubernetes API
/// configuration (see [`K8sNamer::new`]).
pub fn daemonset(
    inner: Arc<dyn Namer>,
    config: &DaemonsetConfig,
    api: &K8sApi,
    prefix: &Path,
) -> Result<Arc<dyn Namer>, DiscoveryError> {
    let err = |m: String| DiscoveryError::new(prefix, format!("k8s.daemonset: {m}"));
    if !dns_name(&config.namespace) || !dns_name(&config.service) {
        return Err(err(format!(
            "namespace {:?} and service {:?} must be DNS names",
            config.namespace, config.service
        )));
    }
    if config.port.is_empty() || config.port.contains('/') {
        return Err(err(format!(
            "port {:?} is not a port name or number",
            config.port
        )));
    }
    let k8s = K8sConfig {
        api: api.clone(),
        label_selector: None,
        backoff: DiscoveryBackoff::default(),
    };
    let id_prefix = Path::from_labels(["%", "k8s.daemonset"]);
    let daemons = K8sNamer::new(&k8s, &id_prefix).map_err(|e| err(e.message))?;
    let daemons_path = Path::from_labels([&*config.namespace, &config.port, &config.service]);
    Ok(Arc::new(Daemonset {
        inner,
        daemons,
        id_prefix: id_prefix.concat(&daemons_path),
        daemons_path,
        host_network: config.host_network,
    }))
}

impl Namer for Daemonset {
    fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
        let daemons = self.daemons.lookup(&self.daemons_path);
        let (id_prefix, host_network) = (self.id_prefix.clone(), self.host_network);
        forward(self.inner.lookup(residual), Some(daemons), move |r, d| {
            to_daemons(r, d, &id_prefix, host_network)
        })
    }

    fn status(&self) -> Option<NamerStatus> {
        self.inner.status()
    }
}

fn to_daemons(
    r: &Resolution,
    daemons: Option<&Resolution>,
    id_prefix: &Path,
    host_network: bool,
) -> Resolution {
    let Resolution::Bound(b) = r else {
        return r.clone();
    };
    let daemons = match daemons {
        Some(Resolution::Bound(d)) => d,
        Some(Resolution::Pending) | None => return Resolution::Pending,
        Some(Resolution::Failed(m)) => return Resolution::Failed(m.clone()),
        Some(Resolution::Neg | Resolution::Delegate(_)) => return Resolution::Neg,
    };
    let mut addrs: Vec<Address> = Vec::new();
    for a in b.addrs.iter() {
        let daemon = daemons.addrs.iter().find(|d| {
            if host_network {
                a.node().is_some() && a.node() == d.node()
            } else {
                same_subnet(a.addr.ip(), d.addr.ip())
            }
        });
        if let Some(d) = daemon {
            if !addrs.iter().any(|x| x.addr == d.addr) {
                addrs.push(Address {
                    weight: a.weight,
                    ..d.clone()
                });
            }
        }
    }
    if addrs.is_empty() {
        return Resolution::Neg;
    }
    Resolution::Bound(BoundName::new(id_prefix.concat(&b.id), addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_naming::AddressMeta;

    fn addr(ip: &str, port: u16, node: &str) -> Address {
        Address::new(format!("{ip}:{port}").parse().unwrap()).with_meta(AddressMeta {
            node: Some(node.into()),
            ..AddressMeta::default()
        })
    }

    fn bound(id: &str, addrs: Vec<Address>) -> Resolution {
        Resolution::Bound(BoundName::new(Path::read(id).unwrap(), addrs))
    }

    #[test]
    fn maps_endpoints_to_the_daemon_on_their_node() {
        let prefix = Path::read("/%/k8s.daemonset/linkerd/incoming/l5d").unwrap();
        let app = bound(
            "/#/k8s/default/http/web",
            vec![
                addr("10.1.1.5", 80, "n1"),
                addr("10.1.2.5", 80, "n2"),
                addr("10.1.3.5", 80, "n3"),
            ],
        );
        let daemons = bound(
            "/%/k8s.daemonset/linkerd/incoming/l5d",
            vec![addr("10.1.1.2", 4141, "n1"), addr("10.1.2.2", 4141, "n2")],
        );
        let Resolution::Bound(by_node) = to_daemons(&app, Some(&daemons), &prefix, true) else {
            panic!()
        };
        assert_eq!(
            by_node.id.to_string(),
            "/%/k8s.daemonset/linkerd/incoming/l5d/#/k8s/default/http/web"
        );
        let addrs: Vec<String> = by_node.addrs.iter().map(|a| a.addr.to_string()).collect();
        assert_eq!(addrs, ["10.1.1.2:4141", "10.1.2.2:4141"]);
        // By /24: the daemon on n2 is in 10.1.2.0/24 whatever the node names say.
        let moved = bound(
            "/%/k8s.daemonset/linkerd/incoming/l5d",
            vec![addr("10.1.2.2", 4141, "elsewhere")],
        );
        let Resolution::Bound(by_ip) = to_daemons(&app, Some(&moved), &prefix, false) else {
            panic!()
        };
        assert_eq!(by_ip.addrs.len(), 1);
        assert_eq!(by_ip.addrs[0].addr.to_string(), "10.1.2.2:4141");
        assert_eq!(
            to_daemons(&app, Some(&moved), &prefix, true),
            Resolution::Neg
        );
        assert_eq!(
            to_daemons(&app, Some(&Resolution::Neg), &prefix, true),
            Resolution::Neg
        );
        assert_eq!(to_daemons(&app, None, &prefix, true), Resolution::Pending);
        assert_eq!(
            to_daemons(&Resolution::Neg, Some(&daemons), &prefix, true),
            Resolution::Neg
        );
    }
}
