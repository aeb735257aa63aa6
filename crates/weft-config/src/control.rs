//! The `weft control` configuration file: the control plane's storage, listeners, write
//! credentials and namers. Same two stages and the same [`ConfigError`] as the proxy's file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raw::{RawBackendTls, RawNamer};
use crate::values::Dur;
use crate::{BackendTls, NamerConfig};

/// A whole, validated `weft control` configuration (`docs/control-plane.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// Where dtabs are stored (yaml `storage`); default `kind: memory`.
    pub storage: StorageConfig,
    /// The operators' HTTP API (yaml `httpApi.addr`); default `127.0.0.1:4180`, namerd's
    /// port.
    pub http_api: SocketAddr,
    /// The control plane's own admin server: `/metrics`, `/ready`, `/live` (yaml
    /// `admin.addr`); default `127.0.0.1:9991`.
    pub admin: SocketAddr,
    /// The resolution service for proxies (yaml `grpc.addr`); default `127.0.0.1:4100`.
    /// Reserved: the resolution service is served by the `weft-resolve` crate.
    pub grpc: SocketAddr,
    /// Who may write (yaml `auth`); with neither a token file nor client ids every write is
    /// refused.
    pub auth: ControlAuth,
    /// Who may read (yaml `readAccess`); default loopback clients only.
    pub read_access: ReadAccess,
    /// Namers the control plane runs for `delegate` and `resolve` (yaml `namers`), as in the
    /// proxy's file.
    pub namers: Vec<NamerConfig>,
}

/// Where the dtabs live (yaml `storage.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// `memory`: in this process only, lost on exit; for trying things out.
    Memory,
    /// `fs`: one `<namespace>.dtab` file per namespace in `dir` (yaml `storage.dir`,
    /// relative to the config file), watched for changes.
    Fs {
        /// The directory.
        dir: PathBuf,
    },
    /// `etcd`: an etcd v3 cluster.
    Etcd(EtcdConfig),
}

/// `storage: {kind: etcd, ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs or `host:port`s of the cluster's members (yaml `endpoints`); at least one.
    pub endpoints: Vec<String>,
    /// Key prefix; a namespace `ns` is stored under `<prefix><ns>` (yaml `prefix`); default
    /// `/weft/dtabs/`.
    pub prefix: String,
    /// TLS to etcd (yaml `tls: {trustCerts, clientAuth: {certPath, keyPath}, commonName}`);
    /// `None`: plain text.
    pub tls: Option<BackendTls>,
    /// etcd user name and password (yaml `user`, and `password` or `passwordFile`).
    pub user: Option<(String, EtcdPassword)>,
    /// How long one etcd request may take before the API answers 503 (yaml `timeout`);
    /// default 5s.
    pub timeout: Duration,
}

/// Where the etcd password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdPassword {
    /// Written in the config file (yaml `password`).
    Inline(String),
    /// Read from this file at start, trailing whitespace removed (yaml `passwordFile`).
    File(PathBuf),
}

/// `auth`: the credentials a write must carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlAuth {
    /// A file holding the bearer token (yaml `tokenFile`); re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// SPIFFE ids of mTLS clients allowed to write (yaml `clientIds`), e.g.
    /// `spiffe://example.org/ops/deployer`. Needs `tls`.
    pub client_ids: Vec<String>,
    /// Serve the HTTP API over TLS with this certificate (yaml `tls: {cert, key,
    /// trustBundle}`); the trust bundle verifies client certificates (optional ones).
    pub tls: Option<ControlTls>,
}

/// The HTTP API's TLS server certificate and the CA bundle client certificates chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlTls {
    /// PEM certificate chain (yaml `cert`).
    pub cert: PathBuf,
    /// PEM private key (yaml `key`).
    pub key: PathBuf,
    /// PEM CA certificates for client certificates (yaml `trustBundle`).
    pub trust_bundle: PathBuf,
}

/// `readAccess`: who may read dtabs, delegate and resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReadAccess {
    /// Loopback clients only (the default).
    #[default]
    Loopback,
    /// Any client that can connect.
    Any,
}

impl ControlConfig {
    /// The default HTTP API address, `127.0.0.1:4180` (namerd's).
    pub const DEFAULT_HTTP_API: SocketAddr = loopback(4180);
    /// The default admin address, `127.0.0.1:9991`.
    pub const DEFAULT_ADMIN: SocketAddr = loopback(9991);
    /// The default resolution service address, `127.0.0.1:4100`.
    pub const DEFAULT_GRPC: SocketAddr = loopback(4100);
    /// The default etcd key prefix.
    pub const DEFAULT_ETCD_PREFIX: &'static str = "/weft/dtabs/";
}

const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

// === raw ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawControl {
    pub(crate) storage: Option<RawStorage>,
    pub(crate) http_api: Option<RawListen>,
    pub(crate) admin: Option<RawListen>,
    pub(crate) grpc: Option<RawListen>,
    pub(crate) auth: Option<RawAuth>,
    pub(crate) read_access: Option<ReadAccess>,
    pub(crate) namers: Option<Vec<RawNamer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawListen {
    pub(crate) addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawStorage {
    pub(crate) kind: Option<StorageKindName>,
    // fs
    pub(crate) dir: Option<String>,
    // etcd
    pub(crate) endpoints: Option<Vec<String>>,
    pub(crate) prefix: Option<String>,
    pub(crate) tls: Option<RawBackendTls>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<String>,
    pub(crate) timeout: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum StorageKindName {
    Memory,
    Fs,
    Etcd,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAuth {
    pub(crate) token_file: Option<String>,
    pub(crate) client_ids: Option<Vec<String>>,
    pub(crate) tls: Option<RawControlTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawControlTls {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) trust_bundle: Option<String>,
}
