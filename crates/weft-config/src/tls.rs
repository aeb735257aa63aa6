//! Mutual TLS settings: the proxy's identity (top-level `identity`), what an inbound router
//! requires of its clients (router `tls`), and whom an outbound client expects to reach
//! (`client.tls`). See `docs/identity.md`.

use std::path::PathBuf;

use serde::Serialize;

/// The proxy's identity material (yaml top-level `identity`): PEM files, watched and
/// reloaded live. Relative paths are taken from the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySettings {
    /// Certificate chain, leaf first (yaml `cert`).
    pub cert: PathBuf,
    /// Private key of the leaf (yaml `key`).
    pub key: PathBuf,
    /// Trust anchors that peers' certificates must chain to (yaml `trustBundle`).
    pub trust_bundle: PathBuf,
}

/// What a router's servers require of their clients (yaml router `tls`). TLS is terminated
/// with the proxy's identity and the client's certificate is verified against the trust
/// bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsConfig {
    /// Refuse plaintext connections (yaml `requireTls`); default false: plaintext and mTLS
    /// both accepted, told apart by protocol detection.
    pub require_tls: bool,
    /// Client identities allowed to call this router (yaml `authorizedClients`): SPIFFE IDs,
    /// exact, or ending in `*` to allow a prefix (e.g. `spiffe://weft.local/ns/prod/*`).
    /// Empty: every client with a valid certificate (and plaintext ones, unless
    /// `requireTls`). Others get 403 `l5d-proxy-error: unauthorized`.
    pub authorized_clients: Vec<String>,
}

impl ServerTlsConfig {
    /// True if `client` (a SPIFFE ID, or `None` for plaintext) may call this router.
    pub fn authorizes(&self, client: Option<&str>) -> bool {
        if self.authorized_clients.is_empty() {
            return client.is_some() || !self.require_tls;
        }
        let Some(id) = client else {
            return false;
        };
        self.authorized_clients
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => id == pattern,
            })
    }
}

/// TLS towards meshed endpoints (yaml `client.tls`): the connection is mutual TLS with the
/// proxy's identity, and the server must present `serverIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsConfig {
    /// The SPIFFE ID the endpoint's certificate must carry (yaml `serverIdentity`).
    pub server_identity: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_patterns() {
        let open = ServerTlsConfig::default();
        assert!(open.authorizes(None));
        let strict = ServerTlsConfig {
            require_tls: true,
            authorized_clients: vec![],
        };
        assert!(!strict.authorizes(None));
        assert!(strict.authorizes(Some("spiffe://x/a")));
        let listed = ServerTlsConfig {
            require_tls: false,
            authorized_clients: vec![
                "spiffe://d/ns/a/sa/web".into(),
                "spiffe://d/ns/ops/*".into(),
            ],
        };
        assert!(listed.authorizes(Some("spiffe://d/ns/a/sa/web")));
        assert!(listed.authorizes(Some("spiffe://d/ns/ops/sa/x")));
        assert!(!listed.authorizes(Some("spiffe://d/ns/a/sa/other")));
        assert!(!listed.authorizes(None));
    }
}
