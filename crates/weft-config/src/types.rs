//! The second stage: validated runtime types. Each one can only be built from a file that
//! passed validation (or from its `Default`), so code holding one need not check it again.
//!
//! All of them serialize (for the admin's `/config.json`) in the file's own shape: camelCase
//! keys, durations as strings with units (`"10s"`), so the output parses back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::naming;
use crate::values::{ser_display, ser_duration, ser_header};
use crate::{
    AccessLogConfig, ClientConfig, ConsulConfig, DaemonsetConfig, DnsSrvConfig, K8sConfig,
    LocalnodeConfig, MarathonConfig, ServiceConfig,
};

/// Binary upgrades by socket handoff (yaml `upgrade`): where a running proxy listens for its
/// successor (`weft proxy --upgrade`), see `docs/upgrades.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeConfig {
    /// The Unix socket (yaml `socket`, a path; relative to the config file's directory).
    /// Default: `weft-<admin port>.upgrade.sock` in the system's temporary directory
    /// (`$TMPDIR`, else `/tmp`); `None` when the admin port is 0 and no socket is configured
    /// (no fixed name to find the running proxy by): upgrades are then off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

/// The admin server: where it listens and how long shutdown may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Listen address (yaml `ip` and `port`); default `127.0.0.1:9990`. Never a public
    /// address unless configured.
    pub addr: SocketAddr,
    /// How long a graceful shutdown waits for in-flight requests to finish (yaml
    /// `shutdownGrace`, a duration); default 10s. Counted from the start of the drain, so
    /// it includes the announce window.
    pub shutdown_grace: Duration,
    /// On `SIGTERM` (or `POST /shutdown`), how long the proxy keeps accepting connections
    /// while it announces the drain (`Connection: close` on HTTP/1 responses, GOAWAY on
    /// HTTP/2, `/ready` 503) before it closes its listeners (yaml `drainAnnounce`, a
    /// duration); default 500ms, at most `shutdown_grace` (a longer one is cut to it). Peers
    /// take the proxy out of their balancers before its listener closes: the window the
    /// Kubernetes `preStop` convention gives endpoint removal to propagate. Not applied when
    /// a successor took the listeners over (`--upgrade`).
    pub drain_announce: Duration,
}

impl AdminConfig {
    /// The default admin address, `127.0.0.1:9990`.
    pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9990);
    /// The default shutdown grace, 10 seconds.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// The default drain announce window, 500 milliseconds.
    pub const DEFAULT_DRAIN_ANNOUNCE: Duration = Duration::from_millis(500);
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: Self::DEFAULT_ADDR,
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
            drain_announce: Self::DEFAULT_DRAIN_ANNOUNCE,
        }
    }
}

impl Serialize for AdminConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            ip: IpAddr,
            port: u16,
            #[serde(serialize_with = "ser_duration")]
            shutdown_grace: Duration,
            #[serde(serialize_with = "ser_duration")]
            drain_announce: Duration,
        }
        let out = Out {
            ip: self.addr.ip(),
            port: self.addr.port(),
            shutdown_grace: self.shutdown_grace,
            drain_announce: self.drain_announce,
        };
        out.serialize(s)
    }
}

/// A namer: serves the names under `prefix` (yaml `{kind: fs, prefix: /#/fs, rootDir: ...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamerConfig {
    /// The names this namer serves; always starts with `/#/` and is unique among namers.
    pub prefix: naming::Path,
    /// Which namer, with its own settings (yaml `kind` and the kind's keys).
    #[serde(flatten)]
    pub kind: NamerKind,
    /// Applied in order to every address set the namer yields; default none.
    pub transformers: Vec<TransformerConfig>,
}

/// The kinds of namer. Each also accepts Linkerd 1's spelling, `io.l5d.<kind>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum NamerKind {
    /// `kind: fs`: one file per service under `root_dir`, named after the path segment after
    /// the prefix, listing the service's addresses (`host port` per line); files are watched
    /// for changes (Linkerd 1's `io.l5d.fs`).
    Fs {
        /// The directory (yaml `rootDir`, required). A relative path in the file is taken
        /// relative to the config file's directory; here it is already joined.
        root_dir: PathBuf,
    },
    /// `kind: dnssrv`: DNS SRV records.
    #[serde(rename = "dnssrv")]
    DnsSrv(DnsSrvConfig),
    /// `kind: consul`: Consul's health API with blocking queries.
    Consul(ConsulConfig),
    /// `kind: k8s`: Kubernetes EndpointSlices.
    K8s(K8sConfig),
    /// `kind: marathon`: Marathon apps and their tasks.
    Marathon(MarathonConfig),
}

impl NamerKind {
    /// The kind's name as written in the file (without `io.l5d.`).
    pub fn name(&self) -> &'static str {
        match self {
            NamerKind::Fs { .. } => "fs",
            NamerKind::DnsSrv(_) => "dnssrv",
            NamerKind::Consul(_) => "consul",
            NamerKind::K8s(_) => "k8s",
            NamerKind::Marathon(_) => "marathon",
        }
    }
}

/// A transformer rewrites the addresses a namer yields (yaml `{kind: port, port: 4143}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TransformerConfig {
    /// `kind: port`: replaces every address's port with `port` (1..=65535), to send to the
    /// peer proxy's inbound listener rather than to the app (linker-to-linker).
    Port {
        /// The port to use (required, not 0).
        port: u16,
    },
    /// `kind: localhost`: keeps only the addresses that are local to this host.
    Localhost,
    /// `kind: specificHost`: keeps only the addresses of `host` (an IP).
    SpecificHost {
        /// The host's IP (required).
        host: std::net::IpAddr,
    },
    /// `kind: replace`: every bound name becomes `path` (bound again); Neg stays Neg.
    Replace {
        /// The path (required).
        #[serde(serialize_with = "ser_display")]
        path: naming::Path,
    },
    /// `kind: const`: always `path` (bound again), whatever the namer said.
    Const {
        /// The path (required).
        #[serde(serialize_with = "ser_display")]
        path: naming::Path,
    },
    /// `kind: k8s.daemonset`: to the DaemonSet's weft on each endpoint's node.
    #[serde(rename = "k8s.daemonset")]
    K8sDaemonset(DaemonsetConfig),
    /// `kind: k8s.localnode`: keeps only endpoints on this node.
    #[serde(rename = "k8s.localnode")]
    K8sLocalnode(LocalnodeConfig),
}

/// A router: listeners, how requests are named, and how names are bound and called.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfig {
    /// The router's name (required), unique among routers; letters, digits, `.`, `_`, `-`.
    /// Used in metrics (`router` label) and logs.
    pub label: String,
    /// The protocol spoken on its listeners; default `http`.
    pub protocol: Protocol,
    /// Listen addresses (yaml `[{ip, port}]`, at least one). Port 0 picks an ephemeral port.
    pub servers: Vec<ServerConfig>,
    /// How a request is turned into a logical name; default `{kind: header.token, header: host}`.
    pub identifier: IdentifierConfig,
    /// The delegation table used to bind names (yaml: a string, usually a `|` block).
    #[serde(serialize_with = "ser_display")]
    pub dtab: naming::Dtab,
    /// The prefix of the logical names the identifier produces (yaml `dstPrefix`); default `/svc`.
    pub dst_prefix: naming::Path,
    /// How long a request waits for its name to bind before failing with 503
    /// `binding-timeout` (yaml `bindingTimeout`, a duration); default 10s.
    #[serde(serialize_with = "ser_duration")]
    pub binding_timeout: Duration,
    /// The most weft proxies a request may have passed through (its `l5d-hop-count`), and the
    /// most `Via` entries it may carry; more is a routing loop and gets 400 `loop-detected`
    /// (yaml `maxHops`, at least 1); default 16.
    pub max_hops: u32,
    /// The largest request header block accepted, in bytes; bigger gets 431 (yaml
    /// `maxHeaderBytes`, at least 1); default 65536.
    pub max_header_bytes: usize,
    /// Listener ports whose connections skip protocol detection and are proxied as opaque TCP
    /// at once (yaml `opaquePorts`), for server-speaks-first protocols (MySQL, SMTP); default
    /// none.
    pub opaque_ports: Vec<u16>,
    /// How long protocol detection waits for a client's first bytes before treating the
    /// connection as opaque TCP (yaml `detectTimeout`); default 1s.
    #[serde(serialize_with = "ser_duration")]
    pub detect_timeout: Duration,
    /// An opaque TCP, WebSocket or CONNECT connection with no byte in either direction for
    /// this long is closed (yaml `tcpIdleTimeout`); default 1h.
    #[serde(serialize_with = "ser_duration")]
    pub tcp_idle_timeout: Duration,
    /// A client's HTTP/1.1 connection with no request in progress and no byte received for
    /// this long is closed (yaml `keepAliveTimeout`); default 1h. Long, because closing an
    /// idle keep-alive connection races with a client sending on it (RFC 9112 section 9.5):
    /// the client, not the proxy, should decide when its pooled connections go.
    #[serde(serialize_with = "ser_duration")]
    pub keep_alive_timeout: Duration,
    /// A request head on an HTTP/1.1 connection must be complete this long after its first
    /// byte, or the client gets 408 `header-timeout` and the connection closes (yaml
    /// `headerReadTimeout`); default 30s. Guards against clients that hold a connection by
    /// trickling a head (slowloris).
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// Which messages get a `Via` entry for this proxy (yaml `via`: `request`, `response`,
    /// `both` or `none`); default `none`, so an application sees a request as if its client
    /// had called it directly, as with linkerd2-proxy and Envoy. Some servers change what
    /// they send when `Via` is present (nginx's default `gzip_proxied off` stops
    /// compressing). Routing loops are detected without it (`docs/routing.md`).
    pub via: ViaPolicy,
    /// mTLS termination and client authorization on this router's servers (yaml `tls`);
    /// `None`: plaintext only. Needs the top-level `identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::ServerTlsConfig>,
    /// Settings of each bound client (one per bound name).
    pub client: ClientConfig,
    /// Settings of each logical service (one per logical name).
    pub service: ServiceConfig,
    /// The router's access log (yaml `accessLog`); `None` (no log) by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogConfig>,
    /// How names are bound (yaml `interpreter`): with this proxy's own namers (`default`),
    /// or by the control plane (`control`).
    pub interpreter: InterpreterConfig,
}

/// A router's interpreter (yaml `interpreter: {kind: ...}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum InterpreterConfig {
    /// `default`: the namers of this config file bind names under the router's `dtab`.
    #[default]
    Default,
    /// `control`: `weft control` binds names under a namespace's dtab, followed by the
    /// router's `dtab` and per-request overrides (Linkerd 1's `io.l5d.namerd`).
    Control(ControlInterpreterConfig),
}

/// `interpreter: {kind: control, ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlInterpreterConfig {
    /// Control instances as `host:port` (yaml `addresses`, at least one), tried in order
    /// with failover.
    pub addresses: Vec<String>,
    /// The namespace whose dtab binds names (yaml `namespace`); default `default`.
    pub namespace: String,
    /// Where the last state of every binding is kept across restarts (yaml `cacheFile`,
    /// relative to the config file's directory). Default:
    /// `<temp dir>/weft-<admin port>-<router label>.control-cache`; none when the admin port
    /// is 0 (no stable name to find it again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_file: Option<PathBuf>,
}

impl ControlInterpreterConfig {
    /// Default `namespace`, `default`.
    pub const DEFAULT_NAMESPACE: &'static str = "default";
}

impl RouterConfig {
    /// Default `dstPrefix`, `/svc`.
    pub const DEFAULT_DST_PREFIX: &'static str = "/svc";
    /// Default `bindingTimeout`, 10 seconds.
    pub const DEFAULT_BINDING_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `maxHops`, 16.
    pub const DEFAULT_MAX_HOPS: u32 = 16;
    /// Default `maxHeaderBytes`, 65536 bytes.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Default `detectTimeout`, 1 second: clients of HTTP and TLS speak within a round trip.
    pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default `tcpIdleTimeout`, 1 hour.
    pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Default `keepAliveTimeout`, 1 hour (Envoy's default idle timeout for downstream
    /// connections).
    pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Default `headerReadTimeout`, 30 seconds (hyper's default header read timeout).
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
}

/// The protocol of a router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// `http`: HTTP/1.1 and HTTP/2 (including gRPC), detected per connection.
    #[default]
    #[serde(rename = "http")]
    Http,
    /// `tcp`: every connection is opaque TCP, routed by `/tcp/<port>`; no detection.
    #[serde(rename = "tcp")]
    Tcp,
}

/// Which messages a router adds its `Via` entry to (RFC 9110 section 7.6.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViaPolicy {
    /// `request`: requests going upstream.
    Request,
    /// `response`: responses going downstream.
    Response,
    /// `both`: requests and responses.
    Both,
    /// `none` (the default): neither.
    #[default]
    None,
}

impl ViaPolicy {
    /// True if requests get a `Via` entry.
    pub fn on_requests(self) -> bool {
        matches!(self, ViaPolicy::Request | ViaPolicy::Both)
    }

    /// True if responses get a `Via` entry.
    pub fn on_responses(self) -> bool {
        matches!(self, ViaPolicy::Response | ViaPolicy::Both)
    }
}

/// One listener of a router (yaml `{ip: 127.0.0.1, port: 4140}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Listen address: yaml `ip` (default `127.0.0.1`) and `port` (required; 0 = ephemeral).
    pub addr: SocketAddr,
    /// TLS termination with the listener's own certificates (yaml `tls`), for clients outside
    /// the mesh; `None`: plaintext, or mesh TLS per the router's `tls`.
    pub tls: Option<crate::IngressTlsConfig>,
    /// Drop every `l5d-*` request header that clients of this listener send (yaml
    /// `clearContext`, Linkerd 1's key); default false. Set it on every listener that accepts
    /// traffic from outside the mesh: otherwise a client could send `l5d-dtab` and route its
    /// own request wherever the proxy can reach.
    pub clear_context: bool,
}

impl Serialize for ServerConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            ip: IpAddr,
            port: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            tls: Option<&'a crate::IngressTlsConfig>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            clear_context: bool,
        }
        Out {
            ip: self.addr.ip(),
            port: self.addr.port(),
            tls: self.tls.as_ref(),
            clear_context: self.clear_context,
        }
        .serialize(s)
    }
}

/// How a request becomes a logical name (appended to the router's `dstPrefix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum IdentifierConfig {
    /// `kind: header.token`: the value of `header` (default `host`) as one segment, port
    /// stripped from an authority; `l5d-dst-override` wins over Host.
    #[serde(rename = "header.token")]
    HeaderToken {
        /// The header to read; default `host`.
        #[serde(serialize_with = "ser_header")]
        header: http::HeaderName,
    },
    /// `kind: methodAndHost`: `/<version>/<method>/<host>` (Linkerd 1's default).
    #[serde(rename = "methodAndHost")]
    MethodAndHost,
    /// `kind: path`: the first `segments` segments of the URL path.
    #[serde(rename = "path")]
    Path {
        /// How many path segments name the service (at least 1); default 1.
        segments: usize,
        /// Whether to strip those segments from the request before forwarding; default false.
        consume: bool,
    },
    /// `kind: header`: the value of `header` (default `l5d-name`) is itself a path.
    #[serde(rename = "header")]
    Header {
        /// The header to read; default `l5d-name`.
        #[serde(serialize_with = "ser_header")]
        header: http::HeaderName,
    },
    /// `kind: static`: every request gets the same name `path` (required).
    #[serde(rename = "static")]
    Static {
        /// The name, e.g. `/foo` (not prefixed with `dstPrefix`).
        path: naming::Path,
    },
}

impl Default for IdentifierConfig {
    fn default() -> Self {
        IdentifierConfig::HeaderToken {
            header: http::header::HOST,
        }
    }
}
