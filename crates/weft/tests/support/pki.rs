//! Identities and a two-proxy mesh for the mutual TLS tests: a CA made with `weft_tls::ca`,
//! certificates issued by it (or forged with rcgen, for the refusals), rustls clients that
//! speak mesh TLS straight to an inbound proxy, and the mesh app <- inbound <- outbound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use weft_tls::ca;

use super::{bin, metrics, private_loopback, Disco, Weft};

pub(crate) const TRUST_DOMAIN: &str = "weft.test";
/// The client side's identity, the only one the mesh's inbound router authorizes.
pub(crate) const WEB: &str = "spiffe://weft.test/ns/default/sa/web";
/// The inbound proxy's identity.
pub(crate) const BOOKS: &str = "spiffe://weft.test/ns/default/sa/books";
/// The port of the mesh's inbound router (the outbound reaches it via the `port` transformer).
const INBOUND_PORT: u16 = 4143;

/// A CA directory and a directory for what it issues (both removed on drop).
pub(crate) struct Pki {
    ca: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Pki {
    /// A new CA (`ca::init`) for `trust_domain`.
    pub(crate) fn new(trust_domain: &str) -> Pki {
        let ca = tempfile::tempdir().expect("tempdir");
        ca::init(ca.path(), trust_domain).expect("ca init");
        Pki {
            ca,
            certs: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn ca_dir(&self) -> &Path {
        self.ca.path()
    }

    /// The trust bundle: the CA's anchor.
    pub(crate) fn bundle(&self) -> PathBuf {
        self.ca.path().join(ca::ANCHOR_CERT)
    }

    /// `<name>.crt` and `<name>.key` in the certificates directory.
    pub(crate) fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.certs.path().join(format!("{name}.crt")),
            self.certs.path().join(format!("{name}.key")),
        )
    }

    /// Issues a key and chain for `id` valid for one hour into [`Pki::files`]`(name)`,
    /// replacing earlier ones by rename; returns (cert, key).
    pub(crate) fn issue(&self, name: &str, id: &str) -> (PathBuf, PathBuf) {
        self.issue_for(name, id, Duration::from_secs(3600))
    }

    /// Like [`Pki::issue`], valid for `lifetime`.
    pub(crate) fn issue_for(&self, name: &str, id: &str, lifetime: Duration) -> (PathBuf, PathBuf) {
        let (key, csr) = ca::csr(id).expect("csr");
        let chain = ca::issue(self.ca.path(), &csr, id, lifetime).expect("issue");
        self.write(name, &chain, &key)
    }

    /// A leaf for `id` signed by this CA's issuer with rcgen directly, bypassing the checks
    /// of `ca::issue`: valid from January 1st of year `from` to January 1st of year `until`
    /// (an expired certificate, say), any trust domain.
    pub(crate) fn forge(&self, name: &str, id: &str, from: i32, until: i32) -> (PathBuf, PathBuf) {
        let issuer_pem = std::fs::read_to_string(self.ca.path().join(ca::ISSUER_CERT))
            .expect("read issuer cert");
        let issuer_key = rcgen::KeyPair::from_pem(
            &std::fs::read_to_string(self.ca.path().join(ca::ISSUER_KEY)).expect("read issuer key"),
        )
        .expect("issuer key");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&issuer_pem, issuer_key).expect("issuer");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().expect("uri"))];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let leaf = params.signed_by(&key, &issuer).expect("sign");
        self.write(
            name,
            &format!("{}{issuer_pem}", leaf.pem()),
            &key.serialize_pem(),
        )
    }

    fn write(&self, name: &str, chain: &str, key: &str) -> (PathBuf, PathBuf) {
        let (cert_path, key_path) = self.files(name);
        ca::write_file(&key_path, key.as_bytes(), true).expect("write key");
        ca::write_file(&cert_path, chain.as_bytes(), false).expect("write cert");
        (cert_path, key_path)
    }

    /// The `identity:` config line for the files of `name`.
    pub(crate) fn identity_yaml(&self, name: &str) -> String {
        let (cert, key) = self.files(name);
        identity_yaml(&cert, &key, &self.bundle())
    }

    /// A rustls client that presents the certificate of `name`, trusts this CA's anchor and
    /// checks the server's name (mesh certificates carry their SNI as a DNS name); no session
    /// resumption, so every connection sees the server's current certificate; HTTP/1.1.
    pub(crate) fn client_config(&self, name: &str) -> Arc<rustls::ClientConfig> {
        self.client_config_trusting(name, &self.bundle())
    }

    /// Like [`Pki::client_config`], trusting the anchors in `bundle`.
    pub(crate) fn client_config_trusting(
        &self,
        name: &str,
        bundle: &Path,
    ) -> Arc<rustls::ClientConfig> {
        let (cert, key) = self.files(name);
        let mut roots = rustls::RootCertStore::empty();
        for anchor in CertificateDer::pem_file_iter(bundle).expect("read bundle") {
            roots.add(anchor.expect("anchor")).expect("add anchor");
        }
        let chain = CertificateDer::pem_file_iter(&cert)
            .expect("read chain")
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_file(&key).expect("read key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client cert");
        cfg.resumption = rustls::client::Resumption::disabled();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

pub(crate) fn identity_yaml(cert: &Path, key: &Path, bundle: &Path) -> String {
    format!(
        "identity: {{cert: '{}', key: '{}', trustBundle: '{}'}}\n",
        cert.display(),
        key.display(),
        bundle.display()
    )
}

/// The first certificate (the leaf) of a PEM file.
pub(crate) fn leaf(cert: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(cert)
        .expect("read cert")
        .next()
        .expect("a certificate")
        .expect("parse cert")
}

/// The SNI that names identity `id` (what an outbound proxy sends).
pub(crate) fn mesh_sni(id: &str) -> ServerName<'static> {
    ServerName::try_from(weft_tls::server_name_for(id).expect("server name")).expect("sni")
}

/// Opens mesh TLS to `addr` as a client with `cfg`, expecting the server to be [`BOOKS`].
pub(crate) async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(mesh_sni(BOOKS), tcp)
        .await
}

/// The first flight of a TLS client with `cfg` for `sni`: its ClientHello record, as bytes.
pub(crate) fn client_hello(cfg: Arc<rustls::ClientConfig>, sni: ServerName<'static>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(cfg, sni).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("ClientHello");
    assert_eq!(out[0], 0x16, "a handshake record");
    out
}

/// Reads until the proxy closes `s` (EOF or reset), 10 s at most; asserts that nothing but
/// TLS alert records came back.
pub(crate) async fn assert_closed_cleanly(s: &mut TcpStream) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the proxy kept a bad connection open");
    assert!(
        got.is_empty() || got[0] == 0x15,
        "the proxy answered bad TLS input with something other than an alert: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// One `GET /<path>` for `books` over a new mesh TLS connection, within 10 s: `Ok` with the
/// response head's status line, `Err` with what went wrong (handshake, reset, no response).
/// Also returns the connection's local address, to find the proxy's log line about it.
pub(crate) async fn mesh_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> (Option<SocketAddr>, Result<String, String>) {
    let tcp = match TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => return (None, Err(format!("connect: {e}"))),
    };
    let local = tcp.local_addr().ok();
    let exchange = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(mesh_sni(BOOKS), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: books\r\nconnection: close\r\n\r\n");
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&got).into_owned();
        match text.lines().next() {
            Some(line) if line.starts_with("HTTP/1.1 ") => Ok(line.to_owned()),
            _ => Err(format!("no HTTP response: {text:?}")),
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".into()));
    (local, result)
}

/// `weft_tls_handshakes_total` of router `inbound` with `result` (`ok` or `error`), whatever
/// its other labels.
pub(crate) fn handshakes(text: &str, result: &str) -> f64 {
    metrics::sum(
        text,
        "weft_tls_handshakes_total",
        &[("router", "inbound"), ("result", result)],
    )
}

/// An inbound proxy with identity [`BOOKS`] (files `books` of `pki`): router `inbound` on a
/// private loopback address, port 4143, mesh TLS required and only [`WEB`] authorized,
/// `/svc` to the app on 127.0.0.1:`app_port`. `extra`: more router keys, 4-space indented
/// lines.
pub(crate) async fn start_inbound(pki: &Pki, app_port: u16, extra: &str) -> Weft {
    start_inbound_as(&pki.identity_yaml("books"), app_port, extra).await
}

/// Like [`start_inbound`], with `identity` as its `identity:` config line.
pub(crate) async fn start_inbound_as(identity: &str, app_port: u16, extra: &str) -> Weft {
    let ip = private_loopback();
    let cfg = format!(
        "{identity}admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: {INBOUND_PORT}}}]\n    tls: {{requireTls: true, authorizedClients: ['{WEB}']}}\n{extra}    dtab: |\n      /svc => /$/inet/127.0.0.1/{app_port};\n",
    );
    Weft::start(bin(), &cfg).await
}

/// app <- inbound (see [`start_inbound`]) <- outbound (router `outbound`, identity
/// `client_id`, mesh TLS to endpoints that must be [`BOOKS`]): `books` goes through both.
pub(crate) struct Mesh {
    pub(crate) pki: Pki,
    pub(crate) inbound: Weft,
    pub(crate) outbound: Weft,
    _disco: Disco,
}

impl Mesh {
    pub(crate) async fn start(app_port: u16, client_id: &str, inbound_extra: &str) -> Mesh {
        let pki = Pki::new(TRUST_DOMAIN);
        pki.issue("books", BOOKS);
        let inbound = start_inbound(&pki, app_port, inbound_extra).await;
        Mesh::around(pki, inbound, client_id).await
    }

    /// The mesh's outbound proxy (identity `client_id`, files `client` of `pki`, issued
    /// here) in front of `inbound`.
    pub(crate) async fn around(pki: Pki, inbound: Weft, client_id: &str) -> Mesh {
        Mesh::around_with_dtab(pki, inbound, client_id, "/svc => /#/fs;").await
    }

    /// Like [`Mesh::around`], with `dtab` on the outbound router (the inbound proxy is the
    /// fs namer's `books`).
    pub(crate) async fn around_with_dtab(
        pki: Pki,
        inbound: Weft,
        client_id: &str,
        dtab: &str,
    ) -> Mesh {
        pki.issue("client", client_id);
        let disco = Disco::new();
        disco.write(
            "books",
            &format!("{} 9999\n", inbound.router("inbound").ip()),
        );
        let cfg = format!(
            "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
             namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: {INBOUND_PORT}}}]}}\n\
             routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client: {{tls: {{serverIdentity: '{BOOKS}'}}}}\n    dtab: |\n      {dtab}\n",
            pki.identity_yaml("client"),
            disco.path().display()
        );
        let outbound = Weft::start(bin(), &cfg).await;
        Mesh {
            pki,
            inbound,
            outbound,
            _disco: disco,
        }
    }
}

/// A running `weft identity serve` with its stderr captured (killed on drop).
pub(crate) struct CaProcess {
    _child: tokio::process::Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl CaProcess {
    /// Starts the CA of `pki` on `listen` (e.g. `127.0.0.1:0`) with token `s3cret` in
    /// `dir/tokens` and `extra` flags (e.g. `["--lifetime", "6s"]`); waits (20 s at most)
    /// for its `listening on https://ADDR` line.
    pub(crate) async fn start(pki: &Pki, dir: &Path, listen: &str, extra: &[&str]) -> CaProcess {
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, "s3cret\n").expect("write tokens");
        CaProcess::start_at(pki.ca_dir(), &tokens, listen, extra).await
    }

    /// Starts `weft identity serve` for the CA in `ca_dir` on `listen` with the bootstrap
    /// tokens in `tokens` and `extra` flags; waits (20 s at most) until it listens.
    pub(crate) async fn start_at(
        ca_dir: &Path,
        tokens: &Path,
        listen: &str,
        extra: &[&str],
    ) -> CaProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(bin())
            .args(["identity", "serve", "--listen", listen])
            .arg("--dir")
            .arg(ca_dir)
            .arg("--token-file")
            .arg(tokens)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn weft identity serve");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                stderr.lock().expect("lock").push_str(&format!("{line}\n"));
                if let Some(a) = line.split("listening on https://").nth(1) {
                    return a.trim().parse::<SocketAddr>().expect("address");
                }
            }
            panic!("the CA exited: {}", stderr.lock().expect("lock"));
        })
        .await
        .expect("the CA listened within 20s");
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        CaProcess {
            _child: child,
            addr,
            stderr,
        }
    }

    /// What the CA printed so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}
