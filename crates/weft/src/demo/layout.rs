//! The mesh plan: which instances run, on which loopback IP and ports, and the files the
//! demo writes for them (sidecar configs and the `fs` discovery directory). Pure.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

/// The app's port on each instance IP (what discovery lists).
pub(crate) const APP_PORT: u16 = 8080;
/// The sidecar's outbound router: the app calls other services through it.
pub(crate) const OUTBOUND_PORT: u16 = 4140;
/// The sidecar's inbound router: peer sidecars (and the load generator) call it.
pub(crate) const INBOUND_PORT: u16 = 4143;
/// The sidecar's admin server (`/metrics`, `/ready`).
pub(crate) const ADMIN_PORT: u16 = 9990;

/// The three services of the currency app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Service {
    /// Front end: `GET /convert` calls converter.
    Web,
    /// Converts an amount, asking rates for the exchange rate.
    Converter,
    /// Knows the exchange rates; three replicas, one slow.
    Rates,
}

impl Service {
    /// Every service, callers first.
    pub(crate) const ALL: [Service; 3] = [Service::Web, Service::Converter, Service::Rates];

    /// The service's name: its discovery file and its `Host` header.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Web => "web",
            Service::Converter => "converter",
            Service::Rates => "rates",
        }
    }

    /// The service's SRV record name in the demo's DNS zone (`--discovery dns`), as the dtab
    /// names it: `_http._tcp.rates.weft.demo`.
    pub(crate) fn srv_name(self) -> String {
        format!("_http._tcp.{self}.{DNS_ZONE}")
            .trim_end_matches('.')
            .to_string()
    }

    /// The service a replica of this one calls, if any.
    pub(crate) fn downstream(self) -> Option<Service> {
        match self {
            Service::Web => Some(Service::Converter),
            Service::Converter => Some(Service::Rates),
            Service::Rates => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first three octets of the instances' loopback IPs (`127.0.10`): instance `n` (from 1)
/// gets `127.0.10.n`. Linux routes all of 127.0.0.0/8 to `lo`, so every instance can use the
/// real sidecar ports without colliding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IpBase([u8; 3]);

impl FromStr for IpBase {
    type Err = String;

    fn from_str(s: &str) -> Result<IpBase, String> {
        let octets: Vec<&str> = s.split('.').collect();
        let parsed: Option<Vec<u8>> = octets.iter().map(|o| o.parse().ok()).collect();
        match parsed.as_deref() {
            Some(&[127, b, c]) => Ok(IpBase([127, b, c])),
            Some(&[_, _, _]) => Err(format!("{s}: must be inside 127.0.0.0/8 (loopback)")),
            _ => Err(format!("{s}: expected three octets such as 127.0.10")),
        }
    }
}

impl fmt::Display for IpBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}.{b}.{c}")
    }
}

/// One service instance: its app and its sidecar share one loopback IP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Instance {
    /// `web`, `converter`, `rates-1` ...
    pub(crate) name: String,
    pub(crate) service: Service,
    pub(crate) ip: Ipv4Addr,
    /// Fixed part of the app's response delay, in milliseconds.
    pub(crate) delay_ms: u64,
    /// Random extra delay, 0..=jitter_ms milliseconds.
    pub(crate) jitter_ms: u64,
}

impl Instance {
    pub(crate) fn app(&self) -> SocketAddr {
        SocketAddr::from((self.ip, APP_PORT))
    }
    pub(crate) fn outbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, OUTBOUND_PORT))
    }
    pub(crate) fn inbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, INBOUND_PORT))
    }
    pub(crate) fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.ip, ADMIN_PORT))
    }

    /// Every address this instance binds, for a clear error before anything starts.
    pub(crate) fn addresses(&self) -> [SocketAddr; 4] {
        [self.app(), self.outbound(), self.inbound(), self.admin()]
    }

    /// The response delay as shown in the table (`2-5ms`, `60ms`).
    pub(crate) fn delay_label(&self) -> String {
        match (self.delay_ms, self.jitter_ms) {
            (0, 0) => "-".to_owned(),
            (d, 0) => format!("{d}ms"),
            (d, j) => format!("{d}-{}ms", d + j),
        }
    }

    /// The sidecar's YAML config: outbound through the `fs` namer (or with `dns`, the
    /// `dnssrv` namer asking that server) with the `port` transformer (discovery lists app
    /// ports; traffic goes to the peer's inbound), inbound straight to the local app.
    pub(crate) fn sidecar_config(
        &self,
        disco: &Path,
        dns: Option<SocketAddr>,
    ) -> Result<String, String> {
        let root = disco
            .to_str()
            .ok_or_else(|| format!("{}: path is not UTF-8", disco.display()))?;
        // A JSON string is a valid YAML double-quoted scalar: safe for any path.
        let root = serde_json::Value::from(root).to_string();
        let ip = self.ip;
        let (namer, dtab) = match dns {
            None => (
                format!("  - kind: fs\n    prefix: /#/fs\n    rootDir: {root}\n"),
                "      /svc => /#/fs;\n".to_string(),
            ),
            Some(server) => (
                format!(
                    "  - kind: dnssrv\n    prefix: /#/dnssrv\n    dnsHosts: ['{server}']\n    minTtl: 1s\n    maxTtl: 5s\n"
                ),
                Service::ALL
                    .iter()
                    .map(|s| format!("      /svc/{s} => /#/dnssrv/{};\n", s.srv_name()))
                    .collect(),
            ),
        };
        Ok(format!(
            "admin: {{ip: {ip}, port: {ADMIN_PORT}, shutdownGrace: 5s}}
namers:
{namer}    transformers: [{{kind: port, port: {INBOUND_PORT}}}]
routers:
  - label: outbound
    servers: [{{ip: {ip}, port: {OUTBOUND_PORT}}}]
    dtab: |
{dtab}  - label: inbound
    servers: [{{ip: {ip}, port: {INBOUND_PORT}}}]
    dtab: |
      /svc => /$/inet/{ip}/{APP_PORT};
"
        ))
    }
}

/// The demo's DNS zone (`--discovery dns`).
pub(crate) const DNS_ZONE: &str = "weft.demo.";
/// The port of the demo's DNS server (`--discovery dns`), on `<ip-base>.53`.
pub(crate) const DNS_PORT: u16 = 5353;

/// The whole mesh.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) instances: Vec<Instance>,
    /// Where the demo's DNS server listens with `--discovery dns`.
    pub(crate) dns: SocketAddr,
}

impl Layout {
    /// web, converter and three rates replicas; the last replica answers after `slow_ms`.
    pub(crate) fn new(base: IpBase, slow_ms: u64) -> Layout {
        let plan = [
            ("web", Service::Web, 0, 0),
            ("converter", Service::Converter, 0, 0),
            ("rates-1", Service::Rates, 2, 3),
            ("rates-2", Service::Rates, 2, 3),
            ("rates-3", Service::Rates, slow_ms, 0),
        ];
        let [a, b, c] = base.0;
        let instances = plan
            .iter()
            .zip(1u8..)
            .map(|(&(name, service, delay_ms, jitter_ms), d)| Instance {
                name: name.to_owned(),
                service,
                ip: Ipv4Addr::new(a, b, c, d),
                delay_ms,
                jitter_ms,
            })
            .collect();
        Layout {
            instances,
            dns: SocketAddr::from((Ipv4Addr::new(a, b, c, 53), DNS_PORT)),
        }
    }

    /// The instance held out of DNS until it joins (`--discovery dns`): the last replica.
    pub(crate) fn joiner(&self) -> Option<&Instance> {
        self.of(Service::Rates).last()
    }

    /// The instances of one service.
    pub(crate) fn of(&self, service: Service) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.service == service)
    }

    /// The instance the load generator calls (web's first replica).
    pub(crate) fn entry(&self) -> Option<&Instance> {
        self.of(Service::Web).next()
    }

    /// The discovery files: `(service, contents)` with one `ip port` line per replica.
    pub(crate) fn disco_files(&self) -> Vec<(&'static str, String)> {
        Service::ALL
            .iter()
            .map(|&s| {
                let lines: String = self
                    .of(s)
                    .map(|i| format!("{} {}\n", i.ip, APP_PORT))
                    .collect();
                (s.name(), lines)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_base_accepts_loopback_only() {
        assert_eq!(
            "127.0.10".parse::<IpBase>().unwrap().to_string(),
            "127.0.10"
        );
        assert!("10.0.0".parse::<IpBase>().is_err());
        assert!("127.0.300".parse::<IpBase>().is_err());
        assert!("127.0.10.1".parse::<IpBase>().is_err());
    }

    #[test]
    fn layout_assigns_one_ip_per_instance() {
        let l = Layout::new("127.0.10".parse().unwrap(), 60);
        let ips: Vec<String> = l.instances.iter().map(|i| i.ip.to_string()).collect();
        assert_eq!(
            ips,
            [
                "127.0.10.1",
                "127.0.10.2",
                "127.0.10.3",
                "127.0.10.4",
                "127.0.10.5"
            ]
        );
        let files = l.disco_files();
        assert_eq!(files[2].0, "rates");
        assert_eq!(
            files[2].1,
            "127.0.10.3 8080\n127.0.10.4 8080\n127.0.10.5 8080\n"
        );
        assert_eq!(l.instances[4].delay_label(), "60ms");
        assert_eq!(l.instances[2].delay_label(), "2-5ms");
    }

    #[test]
    fn sidecar_config_routes_through_peer_inbound() {
        let l = Layout::new("127.0.10".parse().unwrap(), 60);
        let yaml = l.instances[2]
            .sidecar_config(Path::new("/tmp/weft-demo-1/disco"), None)
            .unwrap();
        assert!(yaml.contains("admin: {ip: 127.0.10.3, port: 9990, shutdownGrace: 5s}"));
        assert!(yaml.contains("rootDir: \"/tmp/weft-demo-1/disco\""));
        assert!(yaml.contains("transformers: [{kind: port, port: 4143}]"));
        assert!(yaml.contains("/svc => /$/inet/127.0.10.3/8080;"));
        weft_config::Config::parse(&yaml, "demo.yaml").expect("a valid config");
        let dns = "127.0.10.53:5353".parse().unwrap();
        let yaml = l.instances[2]
            .sidecar_config(Path::new("/tmp/weft-demo-1/disco"), Some(dns))
            .unwrap();
        assert!(yaml.contains("dnsHosts: ['127.0.10.53:5353']"), "{yaml}");
        assert!(
            yaml.contains("/svc/rates => /#/dnssrv/_http._tcp.rates.weft.demo;"),
            "{yaml}"
        );
        weft_config::Config::parse(&yaml, "demo.yaml").expect("a valid config");
    }
}
