//! TLS keys: the top-level `identity`, a router's `tls`, `client.tls` and `servers[].tls`.
//! Files are only named here; `weft-tls` reads and checks them when the proxy starts.

use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};

use super::{invalid, Result};
use crate::locate::KeyPath;
use crate::raw::*;
use crate::*;

pub(super) fn identity(
    raw: RawIdentity,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<IdentitySettings> {
    Ok(IdentitySettings {
        cert: file(raw.cert, p, "cert", base_dir)?,
        key: file(raw.key, p, "key", base_dir)?,
        trust_bundle: file(raw.trust_bundle, p, "trustBundle", base_dir)?,
        issuer: raw
            .issuer
            .map(|i| issuer(i, &p.key("issuer"), base_dir))
            .transpose()?,
        federation: raw
            .federation
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, f)| federation(f, &p.key("federation").index(i), base_dir))
            .collect::<Result<Vec<_>>>()
            .and_then(|list| unique_domains(list, &p.key("federation")))?,
    })
}

fn unique_domains(list: Vec<FederationSettings>, p: &KeyPath) -> Result<Vec<FederationSettings>> {
    for (i, f) in list.iter().enumerate() {
        if list[..i].iter().any(|g| g.trust_domain == f.trust_domain) {
            return invalid(
                &p.index(i).key("trustDomain"),
                format!("trust domain {:?} is listed twice", f.trust_domain),
            );
        }
    }
    Ok(list)
}

/// One `identity.federation` entry: a trust domain (a DNS-like name, as in a SPIFFE ID)
/// and its bundle file.
fn federation(raw: RawFederation, p: &KeyPath, base_dir: &FsPath) -> Result<FederationSettings> {
    let trust_domain = match raw.trust_domain.filter(|t| !t.is_empty()) {
        Some(td) if is_trust_domain(&td) => td,
        Some(td) => {
            return invalid(
                &p.key("trustDomain"),
                format!("{td:?} is not a trust domain (lowercase letters, digits, '.', '-', '_'; no scheme)"),
            )
        }
        None => {
            return invalid(
                &p.key("trustDomain"),
                "missing `trustDomain`: the federated trust domain, e.g. cluster-b.example",
            )
        }
    };
    Ok(FederationSettings {
        trust_domain,
        trust_bundle: file(raw.trust_bundle, p, "trustBundle", base_dir)?,
    })
}

/// The characters the SPIFFE ID specification (section 2.1) allows in a trust domain name.
fn is_trust_domain(td: &str) -> bool {
    td.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

fn issuer(raw: RawIssuer, p: &KeyPath, base_dir: &FsPath) -> Result<IssuerSettings> {
    let Some(address) = raw.address.filter(|a| !a.is_empty()) else {
        return invalid(
            &p.key("address"),
            "missing `address`: the CA's host:port (weft identity serve)",
        );
    };
    if address.contains("://") && !address.starts_with("https://") {
        return invalid(
            &p.key("address"),
            format!("{address:?}: the CA is only reached over https"),
        );
    }
    let Some(token_file) = raw.token_file.filter(|t| !t.is_empty()) else {
        return invalid(
            &p.key("tokenFile"),
            "missing `tokenFile`: the file holding the bootstrap token",
        );
    };
    let spiffe_id = match raw.spiffe_id {
        Some(id) if id.starts_with("spiffe://") => id,
        Some(id) => {
            return invalid(
                &p.key("spiffeId"),
                format!("{id:?} is not a SPIFFE ID (spiffe://<trust-domain>/...)"),
            )
        }
        None => {
            return invalid(
                &p.key("spiffeId"),
                "missing `spiffeId`: the identity to ask the CA for",
            )
        }
    };
    Ok(IssuerSettings {
        address,
        token_file: base_dir.join(token_file),
        spiffe_id,
    })
}

/// The required PEM file path at `p.key`, joined to the config file's directory.
fn file(v: Option<String>, p: &KeyPath, key: &'static str, base_dir: &FsPath) -> Result<PathBuf> {
    match v.filter(|s| !s.is_empty()) {
        Some(f) => Ok(base_dir.join(f)),
        None => invalid(&p.key(key), format!("missing `{key}`: a PEM file path")),
    }
}

pub(super) fn server_tls(raw: RawServerTls, p: &KeyPath) -> Result<ServerTlsConfig> {
    let authorized_clients = raw.authorized_clients.unwrap_or_default();
    for (i, id) in authorized_clients.iter().enumerate() {
        if !id.starts_with("spiffe://") {
            return invalid(
                &p.key("authorizedClients").index(i),
                format!("{id:?} is not a SPIFFE ID (spiffe://<trust-domain>/...), nor a prefix of one ending in *"),
            );
        }
    }
    Ok(ServerTlsConfig {
        require_tls: raw.require_tls.unwrap_or(false),
        authorized_clients,
    })
}

/// `client.tls`: `{serverIdentity}` is mesh mTLS; anything else (`{}`, `{serverName}`,
/// `{trustRoots}`) is TLS to a server outside the mesh.
pub(super) fn client_tls(
    raw: RawClientTls,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<ClientTlsConfig> {
    if let Some(id) = raw.server_identity {
        for (key, given) in [
            ("serverName", raw.server_name.is_some()),
            ("trustRoots", raw.trust_roots.is_some()),
        ] {
            if given {
                return invalid(
                    &p.key(key),
                    format!("`{key}` and `serverIdentity` are mutually exclusive: `serverIdentity` is mutual TLS to peer proxies (trusting the identity's bundle), `serverName`/`trustRoots` are TLS to a server outside the mesh"),
                );
            }
        }
        if !id.starts_with("spiffe://") {
            return invalid(
                &p.key("serverIdentity"),
                format!("{id:?} is not a SPIFFE ID (spiffe://<trust-domain>/...)"),
            );
        }
        return Ok(ClientTlsConfig::Mesh {
            server_identity: id,
        });
    }
    if let Some(name) = &raw.server_name {
        if let Err(why) = check_server_name(name) {
            return invalid(&p.key("serverName"), format!("serverName {name:?} {why}"));
        }
    }
    let trust_roots = match raw.trust_roots {
        None => Vec::new(),
        Some(list) if list.is_empty() => {
            return invalid(
                &p.key("trustRoots"),
                "empty trustRoots would trust no server: list PEM files, or leave the key out to use the system's trust store",
            )
        }
        Some(list) => {
            let mut roots = Vec::new();
            for (i, f) in list.into_iter().enumerate() {
                if f.is_empty() {
                    return invalid(
                        &p.key("trustRoots").index(i),
                        "empty file name: expected a PEM file path",
                    );
                }
                roots.push(base_dir.join(f));
            }
            roots
        }
    };
    Ok(ClientTlsConfig::Origin {
        server_name: raw.server_name.map(|n| n.to_ascii_lowercase()),
        trust_roots,
    })
}

/// A server name is an IP address or a DNS name: dot-separated labels of letters, digits and
/// `-` (not at either end), each 1 to 63 bytes, at most 253 bytes in all (RFC 1123 2.1).
fn check_server_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name: it must hold 1 to 253 bytes");
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err("is not a DNS name: labels are letters, digits and '-', 1 to 63 bytes");
    }
    Ok(())
}

/// `servers[].tls`: at least one certificate, each with its `cert` and `key`.
pub(super) fn ingress_tls(
    raw: RawIngressTls,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<IngressTlsConfig> {
    let list = match raw.certificates {
        Some(list) if !list.is_empty() => list,
        _ => {
            return invalid(
                &p.key("certificates"),
                "missing `certificates`: at least one {cert, key} pair of PEM files (the first is the default)",
            )
        }
    };
    let mut certificates = Vec::new();
    for (i, c) in list.into_iter().enumerate() {
        let cp = p.key("certificates").index(i);
        certificates.push(CertificateFiles {
            cert: file(c.cert, &cp, "cert", base_dir)?,
            key: file(c.key, &cp, "key", base_dir)?,
        });
    }
    Ok(IngressTlsConfig { certificates })
}

/// Settings that only make sense with an identity, and ingress servers on a router whose
/// `tls` would refuse their clients (they have no mesh identity).
pub(super) fn check_router(router: &RouterConfig, p: &KeyPath, has_identity: bool) -> Result<()> {
    if !has_identity {
        if router.tls.is_some() {
            return invalid(
                &p.key("tls"),
                "router `tls` needs a top-level `identity` (cert, key, trustBundle)",
            );
        }
        let clients = std::iter::once((p.key("client"), &router.client)).chain(
            router
                .client
                .configs
                .iter()
                .enumerate()
                .map(|(i, c)| (p.key("client").key("configs").index(i), &c.config)),
        );
        for (cp, client) in clients {
            if let Some(ClientTlsConfig::Mesh { .. }) = client.tls {
                return invalid(
                    &cp.key("tls").key("serverIdentity"),
                    "`client.tls.serverIdentity` (mesh TLS) needs a top-level `identity` (cert, key, trustBundle)",
                );
            }
        }
    }
    let refuses_anonymous = router.tls.as_ref().is_some_and(|t| !t.authorizes(None));
    if refuses_anonymous {
        if let Some(j) = router.servers.iter().position(|s| s.tls.is_some()) {
            return invalid(
                &p.key("servers").index(j).key("tls"),
                "clients of a TLS ingress server have no mesh identity, so this router's `tls` (requireTls or authorizedClients) would refuse them all: give the ingress server a router of its own",
            );
        }
    }
    Ok(())
}
