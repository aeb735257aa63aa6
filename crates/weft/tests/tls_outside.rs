//! TLS to and from the outside, with the built binary: origination to a real HTTPS upstream
//! (tokio-rustls and hyper, certificates from a test CA made with rcgen) over HTTP/1.1 and
//! HTTP/2, with SNI and ALPN; refusals as `upstream-tls`; an ingress listener that picks its
//! certificate by SNI, refuses plaintext and garbage (counted with a reason) and picks up a
//! replaced certificate.

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::pki::{assert_closed_cleanly, client_hello, leaf};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// === a test CA ===

/// A CA made with rcgen, writing what it issues into a temporary directory.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write CA");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            dir,
        }
    }

    /// The CA certificate's PEM file.
    fn root(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for `names` (DNS names, or IP addresses) into
    /// `<name>.crt` / `<name>.key`, replacing earlier files by rename; returns their paths.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName((*n).try_into().expect("dns name")),
            })
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (crt, pem) = (
            self.dir.path().join(format!("{file}.crt")),
            self.dir.path().join(format!("{file}.key")),
        );
        replace(&pem, key.serialize_pem().as_bytes());
        replace(&crt, cert.pem().as_bytes());
        (crt, pem)
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(leaf(&self.root())).expect("add root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.resumption = rustls::client::Resumption::disabled();
        Arc::new(cfg)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, as deployment tools do.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

// === an HTTPS upstream ===

/// A TLS server on loopback answering every request with what it saw of the connection:
/// `x-sni`, `x-alpn` and `x-version` headers.
struct HttpsUpstream {
    addr: SocketAddr,
}

impl HttpsUpstream {
    async fn start(cert: &Path, key: &Path, alpn: &[&[u8]]) -> HttpsUpstream {
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .expect("read cert")
            .collect::<Result<_, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let sni = session.server_name().unwrap_or("none").to_string();
                    let alpn = session
                        .alpn_protocol()
                        .map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned());
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let rsp = http::Response::builder()
                            .header("x-sni", sni.as_str())
                            .header("x-alpn", alpn.as_str())
                            .header("x-version", format!("{:?}", req.version()))
                            .body(Full::new(Bytes::from_static(b"hello over TLS")))
                            .expect("response");
                        async move { Ok::<_, Infallible>(rsp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HttpsUpstream { addr }
    }
}

/// weft with router `outbound` sending everything to `/$/inet/<host>/<port>` with
/// `client.tls` set to `tls` (a YAML flow mapping).
async fn origin_weft(host: &str, port: u16, tls: &str) -> Weft {
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client:\n      tls: {tls}\n      failureAccrual: {{kind: none}}\n    dtab: |\n      /svc => /$/inet/{host}/{port};\n"
    );
    Weft::start(bin(), &config).await
}

fn yaml_path(p: &Path) -> String {
    format!("'{}'", p.display())
}

// === origination ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_reached_over_http1_and_http2_with_sni_and_alpn() {
    let ca = TestCa::new("weft test CA");
    let (cert, key) = ca.issue("api", &["api.test"]);
    let upstream = HttpsUpstream::start(&cert, &key, &[b"h2", b"http/1.1"]).await;
    let tls = format!(
        "{{serverName: api.test, trustRoots: [{}]}}",
        yaml_path(&ca.root())
    );
    let weft = origin_weft("127.0.0.1", upstream.addr.port(), &tls).await;

    let r = weft.http1("outbound").get("api", "/h1").await.expect("h1");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.text(), "hello over TLS");
    assert_eq!(r.header("x-sni"), Some("api.test"));
    assert_eq!(r.header("x-alpn"), Some("http/1.1"));
    assert_eq!(r.header("x-version"), Some("HTTP/1.1"));

    let r = weft.http2("outbound").get("api", "/h2").await.expect("h2");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.header("x-sni"), Some("api.test"));
    assert_eq!(r.header("x-alpn"), Some("h2"));
    assert_eq!(r.header("x-version"), Some("HTTP/2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_defaults_to_the_host_of_the_bound_name() {
    let ca = TestCa::new("weft test CA");
    // An IP literal in the bound name: no SNI, the certificate checked for the address.
    let (cert, key) = ca.issue("ip", &["127.0.0.1"]);
    let upstream = HttpsUpstream::start(&cert, &key, &[b"h2", b"http/1.1"]).await;
    let tls = format!("{{trustRoots: [{}]}}", yaml_path(&ca.root()));
    let weft = origin_weft("127.0.0.1", upstream.addr.port(), &tls).await;
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.header("x-sni"), Some("none"));

    // A host name in the bound name is the SNI.
    let (cert, key) = ca.issue("localhost", &["localhost"]);
    let upstream = HttpsUpstream::start(&cert, &key, &[b"http/1.1"]).await;
    let weft = origin_weft("localhost", upstream.addr.port(), &tls).await;
    // `localhost` may also resolve to ::1, where nothing listens: requeues go to 127.0.0.1.
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.header("x-sni"), Some("localhost"));
}

/// A 502 `upstream-tls` marked retryable, whose body says `why`.
#[track_caller]
fn assert_upstream_tls(r: &TestResponse, why: &str) {
    assert_proxy_error(r, 502, "upstream-tls");
    assert_eq!(r.header("l5d-retryable"), Some("true"), "{:?}", r.headers);
    assert!(r.text().contains(why), "body {:?} lacks {why:?}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_name_and_untrusted_roots_fail_as_upstream_tls() {
    let ca = TestCa::new("weft test CA");
    let other_ca = TestCa::new("another CA");
    let (cert, key) = ca.issue("api", &["api.test"]);
    let upstream = HttpsUpstream::start(&cert, &key, &[b"h2", b"http/1.1"]).await;
    let port = upstream.addr.port();

    let wrong_name = format!(
        "{{serverName: other.test, trustRoots: [{}]}}",
        yaml_path(&ca.root())
    );
    let weft = origin_weft("127.0.0.1", port, &wrong_name).await;
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_upstream_tls(&r, "certificate is not valid for other.test");
    let r = weft.http2("outbound").get("api", "/").await.expect("h2");
    assert_upstream_tls(&r, "certificate is not valid for other.test");
    let text = get_metrics(weft.admin()).await;
    assert!(
        metrics::sum(&text, "weft_responses_total", &[("error", "upstream-tls")]) >= 2.0,
        "{text}"
    );

    let untrusted = format!(
        "{{serverName: api.test, trustRoots: [{}]}}",
        yaml_path(&other_ca.root())
    );
    let weft = origin_weft("127.0.0.1", port, &untrusted).await;
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_upstream_tls(&r, "not signed by a trusted root");

    // The default trust store is the system's, which does not know the test CA.
    let weft = origin_weft("127.0.0.1", port, "{serverName: api.test}").await;
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_upstream_tls(&r, "not signed by a trusted root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_an_http1_only_server_goes_as_http1_unless_the_client_insists_on_http2() {
    let ca = TestCa::new("weft test CA");
    let (cert, key) = ca.issue("api", &["api.test"]);
    let upstream = HttpsUpstream::start(&cert, &key, &[b"http/1.1"]).await;
    let tls = format!(
        "{{serverName: api.test, trustRoots: [{}]}}",
        yaml_path(&ca.root())
    );
    // `protocol: auto`: the server does not pick h2 over ALPN, so HTTP/2 requests go to it
    // as HTTP/1.1, the first one included.
    let weft = origin_weft("127.0.0.1", upstream.addr.port(), &tls).await;
    let r = weft.http1("outbound").get("api", "/").await.expect("h1");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    for _ in 0..2 {
        let r = weft.http2("outbound").get("api", "/").await.expect("h2");
        assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
        assert_eq!(r.header("x-alpn"), Some("http/1.1"));
        assert_eq!(r.header("x-version"), Some("HTTP/1.1"));
    }
    // `protocol: http2`: the client insists, and is told why it cannot be.
    let forced = format!("{{protocol: http2, tls: {tls}}}");
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client: {forced}\n    dtab: |\n      /svc => /$/inet/127.0.0.1/{};\n",
        upstream.addr.port()
    );
    let weft = Weft::start(bin(), &config).await;
    let r = weft.http2("outbound").get("api", "/").await.expect("h2");
    assert_eq!(r.status, 502, "{:?} {}", r.headers, r.text());
    assert_eq!(r.proxy_error(), Some("upstream-protocol"));
    assert!(r.text().contains("HTTP/1.1 only"), "{}", r.text());
}

// === ingress ===

/// A test CA, its certificates `a` (for `a.test` and 127.0.0.1: the default) and `b` (for
/// `b.test` and `*.wild.test`), an echo app, and weft terminating TLS for router `edge`.
struct Ingress {
    ca: TestCa,
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
    weft: Weft,
    _app: Upstream,
}

impl Ingress {
    async fn start() -> Ingress {
        Ingress::start_with("").await
    }

    /// Like [`Ingress::start`], with `extra` router keys (one `key: value` line).
    async fn start_with(extra: &str) -> Ingress {
        let ca = TestCa::new("weft test CA");
        let a = ca.issue("a", &["a.test", "127.0.0.1"]);
        let b = ca.issue("b", &["b.test", "*.wild.test"]);
        let app = Upstream::start("app", Behaviour::new().echo()).await;
        let config = format!(
            "admin: {{ip: 127.0.0.1, port: 0}}\n\
             routers:\n  - label: edge\n    servers:\n      - ip: 127.0.0.1\n        port: 0\n        tls:\n          certificates:\n            - {{cert: {}, key: {}}}\n            - {{cert: {}, key: {}}}\n    {}\n    dtab: |\n      /svc => /$/inet/127.0.0.1/{};\n",
            yaml_path(&a.0),
            yaml_path(&a.1),
            yaml_path(&b.0),
            yaml_path(&b.1),
            extra,
            app.port()
        );
        let weft = Weft::start(bin(), &config).await;
        // Refused handshakes are logged at debug: one line per connection.
        weft.set_log_level("info,weft_proxy=debug").await;
        Ingress {
            ca,
            a,
            b,
            weft,
            _app: app,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.weft.router("edge")
    }

    async fn handshakes(&self, labels: &[(&str, &str)]) -> f64 {
        let text = get_metrics(self.weft.admin()).await;
        metrics::sum(&text, "weft_tls_handshakes_total", labels)
    }
}

/// What a TLS client saw: the certificate presented, the ALPN agreed, and the response to
/// `GET /` with Host `books` (status and the echo's protocol version).
#[derive(Debug)]
struct Seen {
    leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    status: u16,
    version: String,
}

/// Connects to `addr` over TLS with `cfg`, sending `sni` (`None`: none, by connecting to
/// the IP address), then sends one request over HTTP/2 if ALPN agreed on it, else HTTP/1.1.
async fn tls_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: Option<&str>,
) -> Result<Seen, String> {
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_string()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?
        .clone()
        .into_owned();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let req = http::Request::get("/")
        .header("host", "books")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let rsp = if alpn.as_deref() == Some(b"h2") {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("h2: {e}"))?;
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = "https://books/".parse().expect("uri");
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("h1: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        }
        .map_err(|e| format!("request: {e}"))?;
        let status = rsp.status().as_u16();
        let body = rsp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((status, body.to_bytes()))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no response within 10s".to_string())??;
    Ok(Seen {
        leaf,
        alpn,
        status,
        version: Echo::parse(&body).version,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_picks_the_certificate_by_sni_over_http1_and_http2() {
    let ing = Ingress::start().await;
    let (a, b) = (leaf(&ing.a.0), leaf(&ing.b.0));
    let cases = [
        (Some("a.test"), &a),
        (Some("b.test"), &b),
        (Some("x.wild.test"), &b),
        (None, &a),
    ];
    for (alpn, version) in [(b"h2".as_slice(), "HTTP/2.0"), (b"http/1.1", "HTTP/1.1")] {
        let cfg = ing.ca.client_config(&[alpn]);
        for (sni, want) in &cases {
            let seen = tls_get(ing.addr(), cfg.clone(), *sni)
                .await
                .unwrap_or_else(|e| panic!("{sni:?}: {e}\n{}", ing.weft.stderr()));
            assert_eq!(&seen.leaf, *want, "certificate for {sni:?}");
            assert_eq!(seen.alpn.as_deref(), Some(alpn), "{sni:?}");
            assert_eq!(
                (seen.status, seen.version.as_str()),
                (200, version),
                "{sni:?}"
            );
        }
    }
    // An unknown name gets the default certificate, which the client refuses.
    let cfg = ing.ca.client_config(&[b"http/1.1"]);
    let err = tls_get(ing.addr(), cfg, Some("unknown.test"))
        .await
        .expect_err("the default certificate is not valid for unknown.test");
    assert!(err.contains(r#"only valid for DnsName("a.test")"#), "{err}");
    let counted = eventually(Duration::from_secs(10), || async {
        let ok = ing
            .handshakes(&[("router", "edge"), ("result", "ok")])
            .await;
        let refused = ing.handshakes(&[("reason", "peer-alert")]).await;
        (ok == 8.0 && refused == 1.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{}", get_metrics(ing.weft.admin()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_refuses_plaintext_and_garbage_counted_by_reason_while_good_requests_pass() {
    let ing = Ingress::start().await;
    let cfg = ing.ca.client_config(&[b"http/1.1"]);
    let addr = ing.addr();

    // A stalled half ClientHello stays open while a good request passes.
    let hello = client_hello(cfg.clone(), ServerName::try_from("a.test").expect("name"));
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&hello[..hello.len() / 2])
        .await
        .expect("write");
    let seen = tls_get(addr, cfg.clone(), Some("a.test"))
        .await
        .expect("a good request while another connection stalls");
    assert_eq!(seen.status, 200);

    let refused = [
        (
            b"GET / HTTP/1.1\r\nhost: books\r\n\r\n".to_vec(),
            "plaintext",
        ),
        (
            [&[0x16, 0x03, 0x01, 0x00, 0x10][..], &[0xab; 16]].concat(),
            "no-client-hello",
        ),
        (hello[..hello.len() / 2].to_vec(), "no-client-hello"),
    ];
    for (bytes, _) in &refused {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        s.shutdown().await.expect("half-close");
        assert_closed_cleanly(&mut s).await;
    }
    // Closing at once (a TCP health check) is no handshake.
    drop(TcpStream::connect(addr).await.expect("connect"));
    stalled.shutdown().await.expect("half-close");
    assert_closed_cleanly(&mut stalled).await;

    let want = [("plaintext", 1.0), ("no-client-hello", 3.0)];
    let counted = eventually(Duration::from_secs(10), || async {
        let mut all = true;
        for (reason, n) in want {
            let got = ing
                .handshakes(&[("result", "error"), ("reason", reason)])
                .await;
            all &= got == n;
        }
        all.then_some(())
    })
    .await;
    let text = get_metrics(ing.weft.admin()).await;
    assert!(counted.is_some(), "{text}");
    assert_eq!(
        metrics::sum(&text, "weft_tls_handshakes_total", &[("result", "error")]),
        4.0,
        "the health check is not counted: {text}"
    );
    let log = ing.weft.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("ingress TLS handshake failed")
                && l.contains("plaintext HTTP")
                && l.contains("peer=")),
        "{log}"
    );
    // Still serving.
    let seen = tls_get(addr, cfg, Some("b.test")).await.expect("after");
    assert_eq!(seen.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_is_used_by_new_connections_and_a_broken_one_is_not() {
    let ing = Ingress::start().await;
    let cfg = ing.ca.client_config(&[b"http/1.1"]);
    let first = tls_get(ing.addr(), cfg.clone(), Some("b.test"))
        .await
        .expect("before");
    assert_eq!(first.leaf, leaf(&ing.b.0));

    let (cert, _) = ing.ca.issue("b", &["b.test", "*.wild.test"]);
    let renewed = leaf(&cert);
    assert_ne!(renewed, first.leaf);
    let picked_up = eventually(Duration::from_secs(10), || async {
        let seen = tls_get(ing.addr(), cfg.clone(), Some("b.test"))
            .await
            .ok()?;
        (seen.leaf == renewed && seen.status == 200).then_some(())
    })
    .await;
    assert!(picked_up.is_some(), "{}", ing.weft.stderr());

    replace(&cert, b"not a certificate");
    let rejected = eventually(Duration::from_secs(10), || async {
        ing.weft
            .stderr()
            .contains("ingress TLS reload rejected")
            .then_some(())
    })
    .await;
    assert!(rejected.is_some(), "{}", ing.weft.stderr());
    let seen = tls_get(ing.addr(), cfg, Some("b.test"))
        .await
        .expect("after a broken file");
    assert_eq!(seen.leaf, renewed, "the last good certificate stays");
}

/// `weft check -c` loads ingress certificates and trust roots offline, as the next start
/// would: a good pair passes naming what it serves, a cert with another certificate's key and
/// a trust-roots file without certificates fail, each on its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_loads_ingress_certificates_and_trust_roots_offline() {
    let ca = TestCa::new("weft test CA");
    let a = ca.issue("a", &["a.test"]);
    let b = ca.issue("b", &["b.test"]);
    let garbage = ca.dir.path().join("roots.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let config = format!(
        "routers:\n  \
         - label: good\n    servers: [{{port: 0, tls: {{certificates: [{{cert: {}, key: {}}}]}}}}]\n    dtab: /svc => /$/inet/127.0.0.1/1;\n  \
         - label: bad\n    servers: [{{port: 0, tls: {{certificates: [{{cert: {}, key: {}}}]}}}}]\n    dtab: /svc => /$/inet/127.0.0.1/1;\n    client: {{tls: {{serverName: api.test, trustRoots: [{}]}}}}\n",
        yaml_path(&a.0),
        yaml_path(&a.1),
        yaml_path(&a.0),
        yaml_path(&b.1),
        yaml_path(&garbage),
    );
    let file = ca.dir.path().join("weft.yaml");
    std::fs::write(&file, config).expect("write config");
    let out = tokio::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&file)
        .args(["-o", "json"])
        .output()
        .await
        .expect("run weft check");
    assert!(!out.status.success(), "two failures must fail the check");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let checks = v["checks"].as_array().expect("checks");
    let find = |kind: &str, target: &str| {
        checks
            .iter()
            .find(|c| {
                c["check"] == kind && c["target"].as_str().is_some_and(|t| t.contains(target))
            })
            .unwrap_or_else(|| panic!("no {kind} check for {target}: {v:#}"))
    };
    let good = find("ingress tls", "router good");
    assert_eq!(good["ok"], true, "{v:#}");
    assert!(good.to_string().contains("a.test"), "{good}");
    assert_eq!(find("ingress tls", "router bad")["ok"], false, "{v:#}");
    assert_eq!(find("trust roots", "router bad")["ok"], false, "{v:#}");
}

/// The HTTP/1.1 timeouts wrap the decrypted stream: over ingress TLS, a request head that
/// never completes gets its 408 `header-timeout` through the TLS session too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_over_ingress_tls_gets_408() {
    use tokio::io::AsyncReadExt;
    let ing = Ingress::start_with("headerReadTimeout: 300ms").await;
    let tcp = TcpStream::connect(ing.addr()).await.expect("connect");
    let name = ServerName::try_from("a.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(ing.ca.client_config(&[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: books\r\n")
        .await
        .expect("write part of a head");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after 10s");
    assert_eq!(
        raw::status(&got),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        raw::header(&got, "l5d-proxy-error").as_deref(),
        Some("header-timeout")
    );
}
