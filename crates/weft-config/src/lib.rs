//! The weft configuration file: YAML in, validated runtime types out.
//!
//! Reading happens in two stages. A raw layer of serde structs mirrors the file, rejects
//! unknown keys and reads scalar values (durations, addresses, ports, paths); the validation
//! stage applies defaults and checks everything that spans values (unique labels and listen
//! addresses, dtab syntax, ranges), producing [`Config`], whose types cannot hold an invalid
//! state ("parse, don't validate"). Every rejection is a [`ConfigError`] naming the file,
//! line, column and key path. The same path serves start-up, `--check-config` and reload.
//!
//! This crate owns the file format, its defaults and the embedded default file. It does not
//! watch files, apply a configuration, or know what the settings do at run time beyond their
//! documentation; the proxy, admin and naming crates consume the types.
//!
//! The user reference is `docs/configuration.md`.

mod client;
mod control;
mod discovery;
mod error;
mod locate;
mod objective;
mod profile;
mod raw;
mod service;
mod telemetry;
mod tls;
mod types;
mod validate;
mod values;

use weft_naming as naming;

use std::path::Path as FsPath;

use serde::Serialize;

pub use client::{
    Backoff, ClientConfig, FailureAccrualConfig, LoadBalancerConfig, PrefixedClientConfig,
    UpstreamProtocol,
};
pub use control::{
    ControlAuth, ControlConfig, ControlTls, EtcdConfig, EtcdPassword, ReadAccess, StorageConfig,
};
pub use discovery::{
    BackendTls, ClientAuth, ConsulConfig, ConsulConsistency, DaemonsetConfig, DiscoveryBackoff,
    DnsSrvConfig, K8sApi, K8sConfig, LocalnodeConfig, MarathonConfig, TagWeight,
};
pub use error::ConfigError;
pub use objective::{Objective, ObjectiveKind};
pub use profile::{GrpcMatch, PathMatch, RouteConfig, RouteMatch, RouteRegex, ServiceProfile};
pub use service::{ResponseClassifier, RetriesConfig, RetryBackoff, RetryBudget, ServiceConfig};
pub use telemetry::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, ExporterConfig, StatsdConfig, TracingConfig,
};
pub use tls::{
    CertificateFiles, ClientTlsConfig, FederationSettings, IdentitySettings, IngressTlsConfig,
    IssuerSettings, ServerTlsConfig,
};
pub use types::{
    AdminConfig, ControlInterpreterConfig, IdentifierConfig, InterpreterConfig, NamerConfig,
    NamerKind, Protocol, RouterConfig, ServerConfig, TransformerConfig, UpgradeConfig, ViaPolicy,
};

use locate::locate;

/// A whole, validated configuration.
///
/// Serializes (for the admin's `/config.json`) in the file's own shape, so the output of
/// `serde_json`/`serde_yaml_ng` parses back with [`Config::parse`] to the same configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The admin server (yaml `admin`); all defaults when absent.
    pub admin: AdminConfig,
    /// Namers, in file order (yaml `namers`); prefixes are unique and start with `/#/`.
    pub namers: Vec<NamerConfig>,
    /// Routers, in file order (yaml `routers`); at least one, labels and listen addresses
    /// unique.
    pub routers: Vec<RouterConfig>,
    /// Trace sampling and span export (yaml `tracing`); `None` when absent: trace headers are
    /// still forwarded, nothing is exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
    /// statsd export of the metrics (yaml `statsd`); `None` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd: Option<StatsdConfig>,
    /// The proxy's mTLS identity (yaml `identity`); `None`: no TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySettings>,
    /// Binary upgrades by socket handoff (yaml `upgrade`).
    #[serde(skip_serializing_if = "upgrade_is_default")]
    pub upgrade: UpgradeConfig,
}

fn upgrade_is_default(u: &UpgradeConfig) -> bool {
    u.socket.is_none()
}

impl Config {
    /// The embedded default configuration's YAML text (see `docs/configuration.md`):
    /// admin on 127.0.0.1:9990, router `outbound` on 127.0.0.1:4140 resolving `/svc` through
    /// an fs namer at `/#/fs` (rootDir `./disco`), router `inbound` on 0.0.0.0:4143 sending
    /// everything to the local app at 127.0.0.1:8080.
    pub const DEFAULT_YAML: &'static str = include_str!("default.yaml");

    /// The origin used for the embedded default in errors and logs.
    pub const DEFAULT_ORIGIN: &'static str = "<embedded default>";

    /// Reads and validates the file at `path`. Errors name `path` as their origin; a relative
    /// `rootDir` is taken relative to the file's directory.
    ///
    /// # Errors
    /// The file cannot be read ([`ConfigError::is_io`]), is not valid YAML, or is not a valid
    /// configuration.
    pub fn load(path: &FsPath) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&origin, e))?;
        Self::parse_at(&text, &origin, path.parent().unwrap_or(FsPath::new("")))
    }

    /// Validates `text`. `origin` names the text in errors (usually its file path) and, taken
    /// as a file path, gives the directory relative `rootDir`s are joined to (none for a bare
    /// file name).
    ///
    /// # Errors
    /// `text` is not valid YAML or not a valid configuration; never panics.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let base = FsPath::new(origin).parent().unwrap_or(FsPath::new(""));
        Self::parse_at(text, origin, base)
    }

    /// The embedded default configuration, parsed from [`Config::DEFAULT_YAML`].
    pub fn embedded_default() -> Config {
        // The embedded text is fixed at compile time and `embedded_default_parses` tests it.
        Self::parse(Self::DEFAULT_YAML, Self::DEFAULT_ORIGIN)
            .expect("the embedded default configuration is valid")
    }

    fn parse_at(text: &str, origin: &str, base_dir: &FsPath) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: Option<raw::RawConfig> = match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(e) => return Err(yaml_error(origin, e)),
        };
        validate::config(raw.unwrap_or_default(), base_dir).map_err(|inv| {
            let pos = position(text, &inv);
            ConfigError::invalid(origin, pos, Some(inv.path.to_string()), inv.message)
        })
    }
}

/// Converts a deserialization error, keeping only its message: the YAML library's own
/// rendering adds its path and position, which `ConfigError` shows in its own format.
fn yaml_error(origin: &str, e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> ConfigError {
    let mut path = e.path().to_string();
    let inner = e.inner();
    if inner.to_string().contains("unknown field `") {
        // The path ends at the unknown key; report the mapping that holds it.
        path = parent_path(e.path());
    }
    let pos = inner.location().map(|l| (l.line(), l.column()));
    let mut msg = inner.to_string();
    if let Some((line, column)) = pos {
        msg = msg.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    // The library prefixes its own key path (the same spelling, sometimes one key deeper).
    if let Some((head, rest)) = msg.split_once(": ") {
        if head == path
            || head.starts_with(&format!("{path}."))
            || (path == "." && !head.contains(' '))
        {
            msg = rest.to_owned();
        }
    }
    if let Some(i) = msg.find(", expected struct ") {
        msg.truncate(i);
        msg.push_str(", expected a mapping of keys to values");
    }
    let key_path = (path != ".").then_some(path);
    ConfigError::invalid(origin, pos, key_path, msg)
}

/// `a.b[0].c` without its last step (`a.b[0]`); `.` for the root.
fn parent_path(path: &serde_path_to_error::Path) -> String {
    let segments: Vec<_> = path.iter().collect();
    let mut out = String::new();
    for seg in segments.iter().take(segments.len().saturating_sub(1)) {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&other.to_string());
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The position of a validation error: the value at its key path (or its nearest present
/// ancestor, for a missing key), shifted into a dtab block for a dtab error.
fn position(text: &str, inv: &validate::Invalid) -> Option<(usize, usize)> {
    let mut path = inv.path.clone();
    let pos = loop {
        if let Some(pos) = locate(text, &path) {
            break pos;
        }
        if !path.pop() {
            return Some((1, 1));
        }
    };
    let Some((line, column)) = inv.within.filter(|_| path == inv.path) else {
        return Some((pos.line, pos.column));
    };
    Some(within_scalar(text, pos, line, column))
}

/// Maps a 1-based (line, column) inside a string scalar's value to the file. Exact for block
/// literals (`|`) and single-line scalars; for other multi-line styles, approximate.
fn within_scalar(text: &str, pos: locate::Pos, line: usize, column: usize) -> (usize, usize) {
    let mut lines = text.lines().skip(pos.line.saturating_sub(1));
    let first = lines.next().unwrap_or("");
    let start = first.chars().nth(pos.column.saturating_sub(1));
    match start {
        Some('|' | '>') => {
            let indent = lines
                .find(|l| !l.trim().is_empty())
                .map_or(0, |l| l.len() - l.trim_start_matches(' ').len());
            (pos.line + line, indent + column)
        }
        Some('"' | '\'') if line == 1 => (pos.line, pos.column + column),
        _ if line == 1 => (pos.line, pos.column + column - 1),
        _ => (pos.line + line - 1, column),
    }
}

#[cfg(test)]
mod tests;
