//! Validation of the `weft control` file (`crate::control`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::Duration;

use super::{discovery, invalid, Result};
use crate::control::{RawAuth, RawControl, RawListen, RawStorage, StorageKindName};
use crate::locate::KeyPath;
use crate::{
    ConfigError, ControlAuth, ControlConfig, ControlTls, EtcdConfig, EtcdPassword, StorageConfig,
};

// Loading lives here, next to the validation it runs, so that the types in `control.rs`
// do not depend on their validation.
impl ControlConfig {
    /// Reads and validates the file at `path`; relative paths in it are taken relative to
    /// the file's directory.
    ///
    /// # Errors
    /// The file cannot be read, is not valid YAML, or not a valid control configuration;
    /// the error names the file, line, column and key path.
    pub fn load(path: &FsPath) -> std::result::Result<ControlConfig, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&origin, e))?;
        Self::parse_at(&text, &origin, path.parent().unwrap_or(FsPath::new("")))
    }

    /// Validates `text`; `origin` names it in errors and its directory is the base of
    /// relative paths.
    ///
    /// # Errors
    /// As [`ControlConfig::load`], without I/O errors.
    pub fn parse(text: &str, origin: &str) -> std::result::Result<ControlConfig, ConfigError> {
        let base = FsPath::new(origin).parent().unwrap_or(FsPath::new(""));
        Self::parse_at(text, origin, base)
    }

    fn parse_at(
        text: &str,
        origin: &str,
        base: &FsPath,
    ) -> std::result::Result<ControlConfig, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: Option<RawControl> = match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(e) => return Err(crate::yaml_error(origin, e)),
        };
        config(raw.unwrap_or_default(), base).map_err(|inv| {
            let pos = crate::position(text, &inv);
            ConfigError::invalid(origin, pos, Some(inv.path.to_string()), inv.message)
        })
    }
}

pub(crate) fn config(raw: RawControl, base: &FsPath) -> Result<ControlConfig> {
    let root = KeyPath::default();
    let storage = storage(raw.storage.unwrap_or_default(), &root.key("storage"), base)?;
    let http_api = listen(
        raw.http_api,
        &root.key("httpApi"),
        ControlConfig::DEFAULT_HTTP_API,
    )?;
    let admin = listen(raw.admin, &root.key("admin"), ControlConfig::DEFAULT_ADMIN)?;
    let grpc = listen(raw.grpc, &root.key("grpc"), ControlConfig::DEFAULT_GRPC)?;
    let listeners = [(http_api, "httpApi"), (admin, "admin"), (grpc, "grpc")];
    for (i, (a, name)) in listeners.iter().enumerate() {
        if let Some((_, other)) = listeners[..i].iter().find(|(b, _)| a.port() != 0 && a == b) {
            return invalid(
                &root.key(name).key("addr"),
                format!("listen address {a} is already used by {other}"),
            );
        }
    }
    let auth = auth(raw.auth.unwrap_or_default(), &root.key("auth"), base)?;
    let mut namers = Vec::new();
    let mut prefixes = HashSet::new();
    for (i, n) in raw.namers.unwrap_or_default().into_iter().enumerate() {
        let p = root.key("namers").index(i);
        let namer = discovery::namer(n, &p, base)?;
        if !prefixes.insert(namer.prefix.clone()) {
            return invalid(
                &p.key("prefix"),
                format!("duplicate namer prefix {}", namer.prefix),
            );
        }
        namers.push(namer);
    }
    Ok(ControlConfig {
        storage,
        http_api,
        admin,
        grpc,
        auth,
        read_access: raw.read_access.unwrap_or_default(),
        namers,
    })
}

fn listen(raw: Option<RawListen>, p: &KeyPath, default: SocketAddr) -> Result<SocketAddr> {
    match raw.and_then(|r| r.addr) {
        None => Ok(default),
        Some(text) => text.trim().parse().or_else(|_| {
            invalid(
                &p.key("addr"),
                format!("invalid address \"{text}\": expected ip:port, like 127.0.0.1:4180"),
            )
        }),
    }
}

fn storage(raw: RawStorage, p: &KeyPath, base: &FsPath) -> Result<StorageConfig> {
    let kind = raw.kind.unwrap_or(StorageKindName::Memory);
    let etcd_only = [
        ("endpoints", raw.endpoints.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("tls", raw.tls.is_some()),
        ("user", raw.user.is_some()),
        ("password", raw.password.is_some()),
        ("passwordFile", raw.password_file.is_some()),
        ("timeout", raw.timeout.is_some()),
    ];
    if kind != StorageKindName::Etcd {
        if let Some((key, _)) = etcd_only.iter().find(|(_, given)| *given) {
            return invalid(&p.key(key), format!("`{key}` applies to `kind: etcd` only"));
        }
    }
    if kind != StorageKindName::Fs && raw.dir.is_some() {
        return invalid(&p.key("dir"), "`dir` applies to `kind: fs` only");
    }
    match kind {
        StorageKindName::Memory => Ok(StorageConfig::Memory),
        StorageKindName::Fs => match raw.dir.filter(|d| !d.is_empty()) {
            Some(dir) => Ok(StorageConfig::Fs {
                dir: base.join(dir),
            }),
            None => invalid(&p.key("dir"), "missing `dir`: the directory of .dtab files"),
        },
        StorageKindName::Etcd => etcd(raw, p, base).map(StorageConfig::Etcd),
    }
}

fn etcd(raw: RawStorage, p: &KeyPath, base: &FsPath) -> Result<EtcdConfig> {
    let endpoints = raw.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        return invalid(
            &p.key("endpoints"),
            "missing `endpoints`: etcd client URLs, like [\"http://127.0.0.1:2379\"]",
        );
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| ControlConfig::DEFAULT_ETCD_PREFIX.to_owned());
    if prefix.is_empty() {
        return invalid(&p.key("prefix"), "`prefix` must not be empty");
    }
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            return invalid(
                &p.key("passwordFile"),
                "give `password` or `passwordFile`, not both",
            )
        }
        (Some(pw), None) => Some(EtcdPassword::Inline(pw)),
        (None, Some(f)) => Some(EtcdPassword::File(base.join(f))),
        (None, None) => None,
    };
    let user = match (raw.user, password) {
        (Some(u), Some(pw)) => Some((u, pw)),
        (None, None) => None,
        (Some(_), None) => {
            return invalid(&p.key("user"), "`user` needs `password` or `passwordFile`")
        }
        (None, Some(_)) => return invalid(&p.key("password"), "a password needs `user`"),
    };
    let timeout = raw.timeout.map_or(Duration::from_secs(5), |d| d.0);
    if timeout.is_zero() {
        return invalid(&p.key("timeout"), "`timeout` must be positive");
    }
    Ok(EtcdConfig {
        endpoints,
        prefix,
        tls: discovery::backend_tls(raw.tls, &p.key("tls"), base)?,
        user,
        timeout,
    })
}

fn auth(raw: RawAuth, p: &KeyPath, base: &FsPath) -> Result<ControlAuth> {
    let client_ids = raw.client_ids.unwrap_or_default();
    for (i, id) in client_ids.iter().enumerate() {
        if !id.starts_with("spiffe://") {
            return invalid(
                &p.key("clientIds").index(i),
                format!("\"{id}\" is not a SPIFFE id (spiffe://trust-domain/path)"),
            );
        }
    }
    let tls = match raw.tls {
        None => None,
        Some(t) => {
            let tp = p.key("tls");
            let file = |v: Option<String>, key: &'static str, what: &str| match v {
                Some(f) if !f.is_empty() => Ok(base.join(f)),
                _ => invalid(&tp.key(key), format!("missing `{key}`: {what}")),
            };
            Some(ControlTls {
                cert: file(t.cert, "cert", "a PEM certificate chain")?,
                key: file(t.key, "key", "a PEM private key")?,
                trust_bundle: file(t.trust_bundle, "trustBundle", "PEM CA certificates")?,
            })
        }
    };
    if !client_ids.is_empty() && tls.is_none() {
        return invalid(
            &p.key("clientIds"),
            "`clientIds` needs `tls` (client certificates are checked on TLS connections)",
        );
    }
    Ok(ControlAuth {
        token_file: raw
            .token_file
            .filter(|f| !f.is_empty())
            .map(|f| base.join(f)),
        client_ids,
        tls,
    })
}
