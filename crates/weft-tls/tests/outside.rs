//! TLS with the outside: ingress certificates picked by SNI and their load errors, and
//! origination verifying a server against configured roots, with real rustls on both sides
//! over sockets on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use weft_tls::{Alpn, Origination, ServerCertificates};

/// A self-signed CA that issues leaves for DNS names into a directory.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Ca {
            issuer: rcgen::Issuer::new(params, key),
            dir,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `<name>.crt` and `<name>.key` for `names`, valid from year `from` to year `until`.
    fn issue(&self, name: &str, names: &[&str], from: i32, until: i32) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, pem) = (
            self.dir.path().join(format!("{name}.crt")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        (crt, pem)
    }
}

/// Serves TLS with `certs` on 127.0.0.1; each connection is dropped after its handshake.
async fn serve(certs: &ServerCertificates) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

/// Connects with `origin` offering `alpn` for `sni`: the ALPN agreed, or the error text.
async fn connect(
    addr: std::net::SocketAddr,
    origin: &Origination,
    alpn: Alpn,
    sni: &str,
) -> Result<Option<Vec<u8>>, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(origin.client_config(alpn))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test]
async fn origination_reaches_the_certificate_picked_by_sni() {
    let ca = Ca::new();
    let a = ca.issue("a", &["a.test"], 2020, 2100);
    let b = ca.issue("b", &["b.test", "*.wild.test"], 2020, 2100);
    let certs = ServerCertificates::load(&[a, b]).unwrap();
    assert_eq!(
        certs.names(),
        [
            vec!["a.test".to_string()],
            vec!["b.test".into(), "*.wild.test".into()]
        ]
    );
    let addr = serve(&certs).await;
    let origin = Origination::load(&[ca.root()]).unwrap();
    // Each name verifies only if the matching certificate was presented.
    for sni in ["a.test", "b.test", "x.wild.test"] {
        let alpn = connect(addr, &origin, Alpn::H2, sni).await;
        assert_eq!(alpn, Ok(Some(b"h2".to_vec())), "{sni}");
    }
    let alpn = connect(addr, &origin, Alpn::Http1, "a.test").await;
    assert_eq!(alpn, Ok(Some(b"http/1.1".to_vec())));
    assert_eq!(connect(addr, &origin, Alpn::None, "a.test").await, Ok(None));
    // An unknown name gets the default certificate, not valid for it.
    let err = connect(addr, &origin, Alpn::Http1, "c.test")
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name \"c.test\""), "{err}");
    // Roots that did not sign it are refused.
    let other = Origination::load(&[Ca::new().root()]).unwrap();
    let err = connect(addr, &other, Alpn::Http1, "a.test")
        .await
        .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[track_caller]
fn load_err(pairs: &[(PathBuf, PathBuf)]) -> String {
    ServerCertificates::load(pairs).unwrap_err().to_string()
}

#[test]
fn ingress_certificates_that_cannot_serve_are_refused_with_the_file() {
    let ca = Ca::new();
    let good = ca.issue("good", &["good.test"], 2020, 2100);
    let other = ca.issue("other", &["other.test"], 2020, 2100);
    let err = load_err(&[(good.0.clone(), other.1.clone())]);
    assert!(err.starts_with(&format!("{}:", other.1.display())), "{err}");
    assert!(err.contains("does not match"), "{err}");

    let expired = ca.issue("expired", &["old.test"], 2020, 2021);
    let err = load_err(&[expired]);
    assert!(err.contains("expired at 2021-01-01T00:00:00Z"), "{err}");

    // Only the default may lack a DNS name: nothing else could select it.
    let nameless = ca.issue("nameless", &[], 2020, 2100);
    assert!(ServerCertificates::load(&[nameless.clone(), good.clone()]).is_ok());
    let err = load_err(&[good, nameless.clone()]);
    assert!(
        err.starts_with(&format!("{}:", nameless.0.display())),
        "{err}"
    );
    assert!(err.contains("no DNS name"), "{err}");

    let missing = Path::new("/nonexistent/x.crt").to_path_buf();
    assert!(load_err(&[(missing, nameless.1)]).contains("cannot read"));
    assert!(load_err(&[]).contains("at least one certificate"));
}

#[test]
fn origination_roots_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let err = Origination::load(std::slice::from_ref(&empty))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("{}:", empty.display())), "{err}");
    // The system's store loads (CI and developer machines have CA certificates).
    let _ = Arc::new(Origination::load(&[]).unwrap());
}
