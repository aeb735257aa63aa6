//! TLS settings: the proxy's identity (top-level `identity`), what an inbound router requires
//! of its clients (router `tls`), whom an outbound client expects to reach (`client.tls`:
//! mesh mTLS or TLS to servers outside the mesh), and TLS termination on ingress listeners
//! (`servers[].tls`). See `docs/identity.md` and `docs/tls.md`.

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
    /// Where the certificate comes from (yaml `issuer`): `weft identity serve`, which the
    /// proxy asks at start and again before each certificate expires, writing `cert` and
    /// `key`. `None`: the files are put there by someone else (and watched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerSettings>,
    /// Other trust domains whose proxies are accepted as peers (yaml `federation`), each with
    /// its own anchors; a gateway between clusters trusts both (see `docs/gateway.md`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub federation: Vec<FederationSettings>,
}

/// One federated trust domain (yaml `identity.federation[]`): a peer whose SPIFFE ID is in
/// `trust_domain` must chain to the anchors in `trust_bundle` (SPIFFE federation; the SPIFFE
/// Trust Domain and Bundle specification, section 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationSettings {
    /// The trust domain (yaml `trustDomain`), a DNS-like name such as `cluster-b.example`.
    pub trust_domain: String,
    /// PEM file of its trust anchors (yaml `trustBundle`), watched with the identity files.
    pub trust_bundle: PathBuf,
}

/// The CA a proxy gets its certificate from (yaml `identity.issuer`); see
/// `docs/identity.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSettings {
    /// The CA's address (yaml `address`): `host:port` or an `https://` URL. Its serving
    /// certificate must chain to the identity's `trustBundle`.
    pub address: String,
    /// The bootstrap token, first line of this file (yaml `tokenFile`).
    pub token_file: PathBuf,
    /// The SPIFFE ID to ask for (yaml `spiffeId`).
    pub spiffe_id: String,
}

impl IssuerSettings {
    /// The CA's URL: `address` as given if it is a URL, else `https://<address>`.
    pub fn url(&self) -> String {
        if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("https://{}", self.address)
        }
    }
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

/// TLS towards a router's endpoints (yaml `client.tls`): either mutual TLS to peer proxies
/// (`{serverIdentity}`) or ordinary TLS to a server outside the mesh (`{serverName,
/// trustRoots}`, both optional). The two are exclusive. See `docs/tls.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum ClientTlsConfig {
    /// Mutual TLS with the proxy's identity to meshed endpoints (those reached through the
    /// `port` transformer); the endpoint's certificate must carry `server_identity`.
    Mesh {
        /// The SPIFFE ID the endpoint's certificate must carry (yaml `serverIdentity`).
        server_identity: String,
    },
    /// TLS to every endpoint of the router, as a browser would: SNI, the server's certificate
    /// verified for the server name against trust roots, ALPN `h2` for HTTP/2 requests and
    /// `http/1.1` for the others, no client certificate.
    Origin {
        /// The name sent as SNI and that the certificate must be valid for (yaml
        /// `serverName`, a DNS name or an IP address). `None`: the host of a bound name
        /// `/$/inet/<host>/<port>`, else the endpoint's IP address.
        #[serde(skip_serializing_if = "Option::is_none")]
        server_name: Option<String>,
        /// PEM files of the trusted roots (yaml `trustRoots`), joined to the config file's
        /// directory when relative. Empty: the operating system's trust store.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        trust_roots: Vec<PathBuf>,
    },
}

/// TLS termination on one listener (yaml `servers[].tls`): every connection must be TLS,
/// answered with the certificate whose DNS names match the ClientHello's SNI. Needs no
/// `identity`; clients have none (no client certificate is asked for). See `docs/tls.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressTlsConfig {
    /// The certificates to choose from, at least one (yaml `certificates`). The first one is
    /// the default, presented when the client sends no SNI or a name no certificate has.
    pub certificates: Vec<CertificateFiles>,
}

/// One certificate of an ingress server (yaml `{cert, key}`): PEM files, watched and
/// reloaded live. Relative paths are taken from the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first (yaml `cert`).
    pub cert: PathBuf,
    /// The leaf's private key (yaml `key`).
    pub key: PathBuf,
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
