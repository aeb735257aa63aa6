//! Identity loading, mutual TLS handshakes and live reload, with real rustls on both sides
//! over real sockets on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use weft_tls::{ca, peer_spiffe_id, server_name_for, Identity, IdentityConfig};

const WEB: &str = "spiffe://weft.local/ns/default/sa/web";
const API: &str = "spiffe://weft.local/ns/prod/sa/api";

fn new_ca(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    ca::init(&dir, "weft.local").unwrap();
    dir
}

/// Issues a leaf for `id` from `ca_dir` and writes `<name>.crt`, `<name>.key` and
/// `<name>-bundle.crt` (the CA's anchor) into `out`.
fn issue_files(ca_dir: &Path, out: &Path, name: &str, id: &str) -> IdentityConfig {
    let (key, csr) = ca::csr(id).unwrap();
    let chain = ca::issue(ca_dir, &csr, id, ca::DEFAULT_LIFETIME).unwrap();
    let cfg = IdentityConfig {
        cert: out.join(format!("{name}.crt")),
        key: out.join(format!("{name}.key")),
        trust_bundle: out.join(format!("{name}-bundle.crt")),
        federation: Vec::new(),
    };
    ca::write_file(&cfg.cert, chain.as_bytes(), false).unwrap();
    ca::write_file(&cfg.key, key.as_bytes(), true).unwrap();
    let anchor = std::fs::read(ca_dir.join(ca::ANCHOR_CERT)).unwrap();
    ca::write_file(&cfg.trust_bundle, &anchor, false).unwrap();
    cfg
}

fn leaf_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// An mTLS echo server: after the handshake it writes the client's SPIFFE ID and a newline,
/// then echoes lines.
async fn start_server(id: Identity) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = peer_spiffe_id(tls.get_ref().1).unwrap_or_default();
                let (r, mut w) = tokio::io::split(tls);
                w.write_all(format!("{peer}\n").as_bytes()).await.unwrap();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if w.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Conn {
    lines: tokio::io::Lines<
        BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    >,
    w: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    /// What the server sent: the client ID it saw.
    seen_by_server: String,
    /// The server's leaf certificate.
    server_leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
}

impl Conn {
    async fn echo(&mut self, s: &str) -> String {
        self.w.write_all(format!("{s}\n").as_bytes()).await.unwrap();
        self.lines.next_line().await.unwrap().unwrap()
    }
}

async fn connect(
    client: &Identity,
    addr: std::net::SocketAddr,
    expected: &str,
) -> Result<Conn, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name_for(expected).unwrap()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(client.client_config(expected))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let server_leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let (r, w) = tokio::io::split(tls);
    let mut lines = BufReader::new(r).lines();
    // With TLS 1.3 a client certificate the server refuses surfaces on the first read.
    let seen_by_server = match lines.next_line().await {
        Ok(Some(l)) => l,
        Ok(None) => return Err("closed".into()),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Conn {
        lines,
        w,
        seen_by_server,
        server_leaf,
        alpn,
    })
}

/// Polls `f` every 50ms for up to 10s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn loads_good_material() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let cfg = issue_files(&ca_dir, tmp.path(), "web", WEB);
    let id = Identity::load(&cfg).unwrap();
    assert_eq!(id.spiffe_id(), WEB);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = id.not_after_unix() - now;
    assert!((23 * 3600..=24 * 3600 + 60).contains(&left), "{left}");
    assert_eq!(
        id.server_name().unwrap(),
        "web.default.serviceaccount.identity.weft.local"
    );
}

#[test]
fn mismatched_key_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let cfg = issue_files(&ca_dir, tmp.path(), "web", WEB);
    let other = issue_files(&ca_dir, tmp.path(), "api", API);
    let bad = IdentityConfig {
        key: other.key.clone(),
        ..cfg
    };
    let err = Identity::load(&bad).unwrap_err();
    assert_eq!(err.path(), Some(other.key.as_path()));
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn expired_certificate_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let cfg = issue_files(&ca_dir, tmp.path(), "web", WEB);
    // Re-sign the same key with a validity entirely in the past.
    let issuer_pem = std::fs::read_to_string(ca_dir.join(ca::ISSUER_CERT)).unwrap();
    let issuer_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join(ca::ISSUER_KEY)).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&issuer_pem, issuer_key).unwrap();
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&cfg.key).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(WEB.try_into().unwrap())];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now - time::Duration::days(1);
    let leaf = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(&cfg.cert, format!("{}{}", leaf.pem(), issuer_pem)).unwrap();
    let err = Identity::load(&cfg).unwrap_err();
    assert_eq!(err.path(), Some(cfg.cert.as_path()));
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn certificate_from_another_ca_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_a = new_ca(tmp.path(), "a");
    let ca_b = new_ca(tmp.path(), "b");
    let cfg = issue_files(&ca_a, tmp.path(), "web", WEB);
    let other = issue_files(&ca_b, tmp.path(), "api", API);
    let bad = IdentityConfig {
        trust_bundle: other.trust_bundle,
        ..cfg.clone()
    };
    let err = Identity::load(&bad).unwrap_err();
    assert_eq!(err.path(), Some(cfg.cert.as_path()));
    assert!(err.to_string().contains("does not chain"), "{err}");
}

#[test]
fn garbage_files_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let cfg = issue_files(&ca_dir, tmp.path(), "web", WEB);
    std::fs::write(&cfg.trust_bundle, "not PEM at all").unwrap();
    let err = Identity::load(&cfg).unwrap_err();
    assert_eq!(err.path(), Some(cfg.trust_bundle.as_path()));
}

#[tokio::test]
async fn mtls_handshake_checks_both_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let server = Identity::load(&issue_files(&ca_dir, tmp.path(), "api", API)).unwrap();
    let client = Identity::load(&issue_files(&ca_dir, tmp.path(), "web", WEB)).unwrap();
    let addr = start_server(server).await;

    let mut conn = connect(&client, addr, API).await.unwrap();
    assert_eq!(conn.seen_by_server, WEB);
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(conn.echo("hello").await, "hello");

    // The server is not who we expect.
    let err = connect(&client, addr, "spiffe://weft.local/ns/prod/sa/other")
        .await
        .err()
        .unwrap();
    assert!(err.contains("NotValidForName"), "{err}");

    // A client whose certificate comes from another CA (same trust domain name); it trusts
    // our anchor too, so only the server can refuse it.
    let other_ca = new_ca(tmp.path(), "other");
    let stranger_cfg = issue_files(&other_ca, tmp.path(), "stranger", WEB);
    let both = [
        std::fs::read(other_ca.join(ca::ANCHOR_CERT)).unwrap(),
        std::fs::read(ca_dir.join(ca::ANCHOR_CERT)).unwrap(),
    ]
    .concat();
    std::fs::write(&stranger_cfg.trust_bundle, both).unwrap();
    let stranger = Identity::load(&stranger_cfg).unwrap();
    let err = connect(&stranger, addr, API).await.err().unwrap();
    assert!(
        err.contains("CertificateUnknown")
            || err.contains("UnknownIssuer")
            || err.contains("alert"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_applies_to_new_connections_and_keeps_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let server_cfg = issue_files(&ca_dir, tmp.path(), "api", API);
    let server = Identity::load(&server_cfg).unwrap();
    server.watch();
    let client = Identity::load(&issue_files(&ca_dir, tmp.path(), "web", WEB)).unwrap();
    let addr = start_server(server.clone()).await;

    let mut old = connect(&client, addr, API).await.unwrap();
    let first = leaf_der(&server_cfg.cert);
    assert_eq!(old.server_leaf, first);

    // A renewal: new key and chain, each replaced by rename.
    let fresh = issue_files(&ca_dir, &tmp.path().join("ca"), "fresh", API);
    std::fs::rename(&fresh.key, &server_cfg.key).unwrap();
    std::fs::rename(&fresh.cert, &server_cfg.cert).unwrap();
    let second = leaf_der(&server_cfg.cert);
    assert_ne!(first, second);
    eventually("the reload", || server.reloads() == 1).await;
    assert_eq!(server.rejected_reloads(), 0);

    let mut new = connect(&client, addr, API).await.unwrap();
    assert_eq!(new.server_leaf, second);
    assert_eq!(new.echo("new").await, "new");
    assert_eq!(old.echo("still here").await, "still here");
}

#[tokio::test]
async fn broken_file_keeps_the_last_good_material() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = new_ca(tmp.path(), "ca");
    let server_cfg = issue_files(&ca_dir, tmp.path(), "api", API);
    let server = Identity::load(&server_cfg).unwrap();
    server.watch();
    let client = Identity::load(&issue_files(&ca_dir, tmp.path(), "web", WEB)).unwrap();
    let addr = start_server(server.clone()).await;
    let good = leaf_der(&server_cfg.cert);

    ca::write_file(
        &server_cfg.cert,
        b"-----BEGIN CERTIFICATE-----\ngarbage\n",
        false,
    )
    .unwrap();
    eventually("the rejection", || server.rejected_reloads() == 1).await;
    assert_eq!(server.reloads(), 0);
    let conn = connect(&client, addr, API).await.unwrap();
    assert_eq!(conn.server_leaf, good);

    // The same broken content is counted once, however often it is re-checked.
    assert!(!server.reload_now().await);
    assert_eq!(server.rejected_reloads(), 1);
}

#[tokio::test]
async fn client_from_another_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = new_ca(tmp.path(), "ours");
    let theirs = tmp.path().join("theirs");
    ca::init(&theirs, "other.example").unwrap();
    let server_cfg = issue_files(&ours, tmp.path(), "api", API);
    // The server trusts both anchors, yet only admits its own trust domain.
    let both = [
        std::fs::read(ours.join(ca::ANCHOR_CERT)).unwrap(),
        std::fs::read(theirs.join(ca::ANCHOR_CERT)).unwrap(),
    ]
    .concat();
    std::fs::write(&server_cfg.trust_bundle, &both).unwrap();
    let server = Identity::load(&server_cfg).unwrap();
    let addr = start_server(server).await;
    let client_cfg = issue_files(
        &theirs,
        tmp.path(),
        "web",
        "spiffe://other.example/ns/x/sa/y",
    );
    std::fs::write(&client_cfg.trust_bundle, &both).unwrap();
    let client = Identity::load(&client_cfg).unwrap();
    assert!(connect(&client, addr, API).await.is_err());
}

/// Two clusters, each with its own CA and trust domain; a gateway in each federates with the
/// other (`identity.federation`), as in docs/gateway.md.
#[tokio::test]
async fn federated_trust_domains_admit_each_other_and_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_a = new_ca(tmp.path(), "a"); // weft.local
    let ca_b = tmp.path().join("b");
    ca::init(&ca_b, "b.example").unwrap();
    const GW_B: &str = "spiffe://b.example/gateway";
    let fed = |domain: &str, ca: &Path| weft_tls::FederatedBundle {
        trust_domain: domain.to_string(),
        trust_bundle: ca.join(ca::ANCHOR_CERT),
    };

    // Gateway B federates with weft.local; a client of weft.local federating with
    // b.example reaches it, both sides checking the chain against the other's anchors.
    let mut gw_b = issue_files(&ca_b, tmp.path(), "gw-b", GW_B);
    gw_b.federation = vec![fed("weft.local", &ca_a)];
    let addr = start_server(Identity::load(&gw_b).unwrap()).await;
    let mut gw_a = issue_files(&ca_a, tmp.path(), "gw-a", WEB);
    gw_a.federation = vec![fed("b.example", &ca_b)];
    let gw_a = Identity::load(&gw_a).unwrap();
    let mut conn = connect(&gw_a, addr, GW_B).await.unwrap();
    assert_eq!(conn.seen_by_server, WEB);
    assert_eq!(conn.echo("across").await, "across");

    // Without federation, the same client cannot even verify the server.
    let plain_a = Identity::load(&issue_files(&ca_a, tmp.path(), "plain-a", WEB)).unwrap();
    assert!(connect(&plain_a, addr, GW_B).await.is_err());

    // An anchor in B's own bundle cannot vouch for an identity in weft.local: the chain must
    // lead to the anchors of the trust domain the ID names (here, A's).
    let rogue = new_ca(tmp.path(), "rogue"); // a second CA naming itself weft.local
    let b_bundle = [
        std::fs::read(ca_b.join(ca::ANCHOR_CERT)).unwrap(),
        std::fs::read(rogue.join(ca::ANCHOR_CERT)).unwrap(),
    ]
    .concat();
    std::fs::write(&gw_b.trust_bundle, b_bundle).unwrap();
    let addr = start_server(Identity::load(&gw_b).unwrap()).await;
    assert!(connect(&gw_a, addr, GW_B).await.is_ok());
    let mut forged = issue_files(&rogue, tmp.path(), "forged", API);
    forged.federation = vec![fed("b.example", &ca_b)];
    let forged = Identity::load(&forged).unwrap();
    assert!(connect(&forged, addr, GW_B).await.is_err());

    // A proxy may not federate with its own trust domain.
    let mut own = issue_files(&ca_a, tmp.path(), "own", WEB);
    own.federation = vec![fed("weft.local", &ca_b)];
    let err = Identity::load(&own).unwrap_err();
    assert!(err.to_string().contains("own trust domain"), "{err}");
}
