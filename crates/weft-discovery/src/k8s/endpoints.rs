//! EndpointSlices into addresses: pure functions over the API's objects, no I/O.
//!
//! Field meanings follow the EndpointSlice v1 API reference (`discovery.k8s.io/v1`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_naming::{Address, AddressMeta};

/// The port label of a name: a port name, or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PortSel {
    /// Matches the slice port with this `name` (`""` for a service's single unnamed port).
    Name(Box<str>),
    /// Matches the slice port whose `port` (the endpoints' port number) is this.
    Number(u16),
}

/// What the namer keeps of one EndpointSlice.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Slice {
    /// TCP ports: (name, number).
    ports: Vec<(Box<str>, u16)>,
    endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, PartialEq)]
struct Endpoint {
    ips: Vec<IpAddr>,
    /// Ready and not terminating: gets traffic.
    serving: bool,
    meta: Arc<AddressMeta>,
}

/// The slices of one service, by slice name.
pub(super) type Slices = BTreeMap<String, Slice>;

impl PortSel {
    /// A number for a label that is one (`8080`), else a port name.
    pub(super) fn parse(label: &str) -> PortSel {
        match label.parse::<u16>() {
            Ok(n) => PortSel::Number(n),
            Err(_) => PortSel::Name(label.into()),
        }
    }
}

/// Checks and converts one slice.
///
/// Slices whose `addressType` is not `IPv4` or `IPv6` (i.e. `FQDN`) have no usable endpoint and
/// become empty. Ports with no number (the API's "all ports") and non-TCP ports are left out.
/// An endpoint gets traffic when `conditions.ready` is true or absent (the API reference: "a
/// nil value should be interpreted as true") and `conditions.terminating` is not true.
///
/// # Errors
/// A port number outside 1..=65535 or an address that is not an IP address: the slice is
/// malformed and the caller keeps what it had.
pub(super) fn parse(slice: &EndpointSlice) -> Result<Slice, String> {
    let name = slice.metadata.name.as_deref().unwrap_or_default();
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return Ok(Slice {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    let mut ports = Vec::new();
    for p in slice.ports.iter().flatten() {
        let Some(number) = p.port else { continue };
        if !matches!(p.protocol.as_deref(), None | Some("TCP")) {
            continue;
        }
        let number = u16::try_from(number)
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| format!("EndpointSlice {name}: port {number} out of range"))?;
        ports.push((p.name.as_deref().unwrap_or_default().into(), number));
    }
    let mut endpoints = Vec::with_capacity(slice.endpoints.len());
    for e in &slice.endpoints {
        let ips = e
            .addresses
            .iter()
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("EndpointSlice {name}: an address is not an IP address"))?;
        let c = e.conditions.as_ref();
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        let mut labels: Vec<(Box<str>, Box<str>)> = Vec::new();
        if let Some(h) = &e.hostname {
            labels.push(("hostname".into(), h.as_str().into()));
        }
        if let Some(z) = &e.zone {
            labels.push(("zone".into(), z.as_str().into()));
        }
        endpoints.push(Endpoint {
            ips,
            serving: ready && !terminating,
            meta: Arc::new(AddressMeta {
                node: e.node_name.as_deref().map(Into::into),
                authority: None,
                labels,
            }),
        });
    }
    Ok(Slice { ports, endpoints })
}

/// The addresses that get traffic on `port`, over all of a service's slices, sorted and
/// without duplicates. Each slice resolves the port on its own `ports` list (slices of one
/// service may carry different numbers for the same port name, e.g. during a rollout).
pub(super) fn addresses<'a>(
    slices: impl Iterator<Item = &'a Slice>,
    port: &PortSel,
) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    for slice in slices {
        let number = slice.ports.iter().find_map(|(name, number)| {
            let hit = match port {
                PortSel::Name(n) => name == n,
                PortSel::Number(n) => number == n,
            };
            hit.then_some(*number)
        });
        let Some(number) = number else { continue };
        for e in slice.endpoints.iter().filter(|e| e.serving) {
            for ip in &e.ips {
                out.push(Address {
                    addr: SocketAddr::new(*ip, number),
                    weight: 1.0,
                    meta: Some(e.meta.clone()),
                });
            }
        }
    }
    out.sort_by_key(|a| a.addr);
    out.dedup_by_key(|a| a.addr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ready_endpoints_on_the_named_port() {
        let s = slice(serde_json::json!({
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "n1",
                 "zone": "z1", "hostname": "web-0"},
                {"addresses": ["10.0.0.2"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true, "terminating": true}},
            ],
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}],
        }));
        let s = parse(&s).unwrap();
        let by_name = addresses([&s].into_iter(), &PortSel::parse("http"));
        let by_number = addresses([&s].into_iter(), &PortSel::parse("8080"));
        assert_eq!(by_name, by_number);
        let addrs: Vec<String> = by_name.iter().map(|a| a.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.2:8080"]);
        let meta = by_name[0].meta.as_deref().unwrap();
        assert_eq!(meta.node.as_deref(), Some("n1"));
        assert_eq!(
            meta.labels,
            [
                ("hostname".into(), "web-0".into()),
                ("zone".into(), "z1".into())
            ]
        );
        assert!(addresses([&s].into_iter(), &PortSel::parse("dns")).is_empty());
        assert!(addresses([&s].into_iter(), &PortSel::parse("9090")).is_empty());
    }

    #[test]
    fn malformed_slices_are_errors() {
        let bad_port = slice(serde_json::json!({
            "metadata": {"name": "a"}, "addressType": "IPv4", "endpoints": [],
            "ports": [{"name": "http", "port": 70000}],
        }));
        assert!(parse(&bad_port).unwrap_err().contains("70000"));
        let bad_ip = slice(serde_json::json!({
            "metadata": {"name": "a"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["nope"]}], "ports": [],
        }));
        assert!(parse(&bad_ip).is_err());
        let fqdn = slice(serde_json::json!({
            "metadata": {"name": "a"}, "addressType": "FQDN",
            "endpoints": [{"addresses": ["web.example"]}], "ports": [{"port": 80}],
        }));
        assert!(addresses([&parse(&fqdn).unwrap()].into_iter(), &PortSel::Number(80)).is_empty());
    }
}
