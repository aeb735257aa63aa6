//! The namer against [`FakeMarathon`], a server that follows Marathon's documented REST API
//! (`/v2/apps?embed=apps.tasks`, the `/v2/events` server-sent event stream, basic auth),
//! since Marathon itself cannot be installed here. Real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft_config::{DiscoveryBackoff, MarathonConfig};
use weft_naming::{Namer, NamerSnapshot, NamerState, Path, Resolution};
use weft_test::marathon::{AppsAnswer, FakeMarathon, FakeTask};

use super::auth::Auth;
use super::MarathonNamer;

/// Long enough for anything that should happen; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(m: &FakeMarathon, ttl: Duration) -> MarathonConfig {
    MarathonConfig {
        host: "127.0.0.1".into(),
        port: m.port(),
        uri_prefix: String::new(),
        use_health_check: false,
        ttl,
        tls: None,
        backoff: DiscoveryBackoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    }
}

/// A namer with a 3 s request timeout (10 s in production), so the never-answering case is
/// quick; loaded CI machines still answer well within it.
fn namer_with(config: &MarathonConfig, auth: Auth) -> MarathonNamer {
    let prefix = Path::read("/#/marathon").unwrap();
    MarathonNamer::with_auth(config, &prefix, auth, Duration::from_secs(3)).unwrap()
}

fn namer(m: &FakeMarathon, ttl: Duration) -> MarathonNamer {
    namer_with(&config(m, ttl), Auth::None)
}

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn task(id: &str, port: u16) -> FakeTask {
    FakeTask::at(id, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The addresses of a bound resolution, sorted; panics on anything else.
fn addrs(r: &Resolution) -> Vec<u16> {
    match r {
        Resolution::Bound(b) => b.addrs.iter().map(|a| a.addr.port()).collect(),
        other => panic!("not bound: {other:?}"),
    }
}

fn bound_ports(r: &Resolution) -> Option<Vec<u16>> {
    matches!(r, Resolution::Bound(_)).then(|| addrs(r))
}

/// Waits until the resolution satisfies `f`.
async fn until(
    rx: &mut tokio::sync::watch::Receiver<Resolution>,
    what: &str,
    f: impl FnMut(&Resolution) -> bool,
) -> Resolution {
    let r = tokio::time::timeout(PATIENCE, rx.wait_for(f)).await;
    let r = r.unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"));
    r.expect("the namer keeps the name").clone()
}

/// Polls `f` until it holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let wait = async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"));
}

fn snapshot(n: &MarathonNamer) -> NamerSnapshot {
    n.status().expect("a backend status").snapshot()
}

#[tokio::test]
async fn tasks_added_and_removed_arrive_through_the_event_stream() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    // A full read only every minute: within the test, only events can bring changes.
    let n = namer(&m, Duration::from_secs(60));
    let mut rx = n.lookup(&p("/web"));
    let r = until(&mut rx, "first answer", |r| *r != Resolution::Pending).await;
    let Resolution::Bound(b) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(b.id, p("/#/marathon/web"));
    assert_eq!(addrs(&r), [31001]);
    assert_eq!(b.addrs[0].node(), Some("127.0.0.1"));
    // The stream is open and the read it prompted on connecting is done.
    eventually("event stream open and read", || {
        m.open_streams() == 1 && snapshot(&n).updates >= 2
    })
    .await;

    m.set_app(
        "/web",
        false,
        vec![task("web.1", 31001), task("web.2", 31002)],
    );
    until(&mut rx, "task added", |r| {
        bound_ports(r) == Some(vec![31001, 31002])
    })
    .await;
    m.set_app("/web", false, vec![task("web.2", 31002)]);
    until(&mut rx, "task removed", |r| {
        bound_ports(r) == Some(vec![31002])
    })
    .await;
    m.remove_app("/web");
    until(&mut rx, "app removed", |r| *r == Resolution::Neg).await;
    let s = snapshot(&n);
    assert_eq!((s.state, s.errors, s.watched), (NamerState::Ok, 0, 1));
}

#[tokio::test]
async fn a_cut_event_stream_is_reconnected() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let n = namer(&m, Duration::from_secs(60));
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "first answer", |r| bound_ports(r).is_some()).await;
    eventually("event stream open and read", || {
        m.open_streams() == 1 && snapshot(&n).updates >= 2
    })
    .await;
    let updates = snapshot(&n).updates;
    m.cut_events();
    // Reconnected, and the read that reconnecting prompts is done: what follows can only
    // arrive through an event on the new stream.
    eventually("reconnected", || {
        m.event_connections() == 2 && m.open_streams() == 1 && snapshot(&n).updates > updates
    })
    .await;
    m.set_app("/web", false, vec![task("web.3", 31003)]);
    until(&mut rx, "change after reconnecting", |r| {
        bound_ports(r) == Some(vec![31003])
    })
    .await;
}

#[tokio::test]
async fn unknown_apps_are_neg_and_apps_without_tasks_are_bound_empty() {
    let m = FakeMarathon::start().await;
    m.set_app("/products/web", false, vec![task("w.1", 31001)]);
    m.set_app("/idle", false, vec![]);
    m.set_app(
        "/staging",
        false,
        vec![task("s.1", 31002).state("TASK_STAGING")],
    );
    let n = namer(&m, Duration::from_secs(60));
    let mut unknown = n.lookup(&p("/nope"));
    let mut nested = n.lookup(&p("/products/web"));
    let mut idle = n.lookup(&p("/idle"));
    let mut staging = n.lookup(&p("/staging"));
    let mut partial = n.lookup(&p("/products"));
    assert_eq!(
        until(&mut unknown, "unknown", |r| *r != Resolution::Pending).await,
        Resolution::Neg
    );
    assert_eq!(
        until(&mut partial, "a prefix of an id", |r| *r
            != Resolution::Pending)
        .await,
        Resolution::Neg
    );
    let r = until(&mut nested, "nested id", |r| *r != Resolution::Pending).await;
    let Resolution::Bound(b) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (b.id.clone(), addrs(&r)),
        (p("/#/marathon/products/web"), vec![31001])
    );
    let r = until(&mut idle, "idle", |r| *r != Resolution::Pending).await;
    assert_eq!(addrs(&r), Vec::<u16>::new());
    let r = until(&mut staging, "staging", |r| *r != Resolution::Pending).await;
    assert_eq!(addrs(&r), Vec::<u16>::new());
    assert_eq!(*n.lookup(&Path::empty()).borrow(), Resolution::Neg);
    // A second lookup of a watched name shares its watch and answers at once.
    assert_eq!(addrs(&n.lookup(&p("/products/web")).borrow()), [31001]);
    assert_eq!(snapshot(&n).watched, 5);
}

#[tokio::test]
async fn with_use_health_check_only_healthy_tasks_are_endpoints() {
    let m = FakeMarathon::start().await;
    let tasks = vec![
        task("web.1", 31001).alive(true),
        task("web.2", 31002).alive(false),
        task("web.3", 31003),
    ];
    m.set_app("/web", true, tasks.clone());
    m.set_app("/unchecked", false, vec![task("u.1", 31004)]);
    let mut c = config(&m, Duration::from_secs(60));
    c.use_health_check = true;
    let n = namer_with(&c, Auth::None);
    let mut rx = n.lookup(&p("/web"));
    let mut unchecked = n.lookup(&p("/unchecked"));
    until(&mut rx, "healthy only", |r| {
        bound_ports(r) == Some(vec![31001])
    })
    .await;
    // An app without health checks: its tasks need no result.
    until(&mut unchecked, "no checks", |r| {
        bound_ports(r) == Some(vec![31004])
    })
    .await;
    eventually("event stream open", || m.open_streams() == 1).await;
    m.set_alive("/web", "web.2", true);
    until(&mut rx, "web.2 healthy", |r| {
        bound_ports(r) == Some(vec![31001, 31002])
    })
    .await;
    m.set_alive("/web", "web.1", false);
    until(&mut rx, "web.1 unhealthy", |r| {
        bound_ports(r) == Some(vec![31002])
    })
    .await;

    // Without useHealthCheck every running task is an endpoint.
    let all = namer(&m, Duration::from_secs(60));
    let mut rx = all.lookup(&p("/web"));
    until(&mut rx, "all tasks", |r| {
        bound_ports(r) == Some(vec![31001, 31002, 31003])
    })
    .await;
}

#[tokio::test]
async fn a_backend_that_goes_away_keeps_the_last_good_set_until_it_returns() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    m.set_app("/api", false, vec![task("api.1", 31005)]);
    let n = namer(&m, Duration::from_millis(200));
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "first answer", |r| bound_ports(r).is_some()).await;

    m.stop();
    eventually("stale", || {
        let s = snapshot(&n);
        s.state == NamerState::Stale && s.errors >= 2
    })
    .await;
    let s = snapshot(&n);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("/v2/apps"),
        "{s:?}"
    );
    assert_eq!(addrs(&rx.borrow()), [31001], "the last good set stays");
    // A name first watched during the outage gets the last good listing's answer.
    assert_eq!(addrs(&n.lookup(&p("/api")).borrow()), [31005]);
    assert_eq!(*n.lookup(&p("/nope")).borrow(), Resolution::Neg);

    m.set_app_quietly(
        "/web",
        false,
        vec![task("web.1", 31001), task("web.2", 31002)],
    );
    m.restart().await;
    until(&mut rx, "changes flow again", |r| {
        bound_ports(r) == Some(vec![31001, 31002])
    })
    .await;
    eventually("ok", || snapshot(&n).state == NamerState::Ok).await;
    // And through the event stream again.
    eventually("event stream back", || m.open_streams() == 1).await;
    m.set_app("/web", false, vec![task("web.2", 31002)]);
    until(&mut rx, "event after return", |r| {
        bound_ports(r) == Some(vec![31002])
    })
    .await;
}

#[tokio::test]
async fn bad_answers_keep_the_last_good_set_and_are_counted() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let n = namer(&m, Duration::from_millis(100));
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "first answer", |r| bound_ports(r).is_some()).await;
    for (answer, error) in [
        (AppsAnswer::ServerError, "500"),
        (AppsAnswer::Malformed, "malformed"),
        (AppsAnswer::WrongShape, "malformed"),
        (AppsAnswer::Oversized, "larger than"),
        (AppsAnswer::Never, "no answer within"),
    ] {
        let errors = snapshot(&n).errors;
        m.set_answer(answer);
        eventually(&format!("{answer:?} counted"), || {
            let s = snapshot(&n);
            s.errors > errors && s.last_error.as_deref().is_some_and(|e| e.contains(error))
        })
        .await;
        assert_eq!(snapshot(&n).state, NamerState::Stale);
        assert_eq!(
            addrs(&rx.borrow()),
            [31001],
            "{answer:?}: the last good set stays"
        );
        m.set_answer(AppsAnswer::Normal);
        eventually(&format!("ok after {answer:?}"), || {
            snapshot(&n).state == NamerState::Ok
        })
        .await;
    }
}

#[tokio::test]
async fn basic_auth_is_sent_and_a_refusal_fails_names_with_no_good_answer() {
    const CRED: &str = "d2VmdDpzM2NyZXQ="; // weft:s3cret
    let m = FakeMarathon::start_with(Some(CRED)).await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let auth = Auth::from_env(
        |v| (v == "MARATHON_HTTP_AUTH_CREDENTIAL").then(|| CRED.into()),
        None,
    );
    let n = namer_with(&config(&m, Duration::from_secs(60)), auth.unwrap());
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "authorized", |r| bound_ports(r).is_some()).await;
    eventually("event stream open", || m.open_streams() == 1).await;
    let seen = m.authorizations();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Basic d2VmdDpzM2NyZXQ=")),
        "{seen:?}"
    );

    let anonymous = namer(&m, Duration::from_secs(60));
    let mut rx = anonymous.lookup(&p("/web"));
    let r = until(&mut rx, "refused", |r| *r != Resolution::Pending).await;
    let Resolution::Failed(msg) = r else {
        panic!("{r:?}")
    };
    assert!(
        msg.contains("401") && msg.contains("MARATHON_HTTP_AUTH_CREDENTIAL"),
        "{msg}"
    );
    assert_eq!(snapshot(&anonymous).state, NamerState::Error);
}

#[tokio::test]
async fn the_refresher_stops_with_the_last_watched_name() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let n = namer(&m, Duration::from_millis(100));
    let mut a = n.lookup(&p("/web"));
    let b = n.lookup(&p("/web"));
    until(&mut a, "first answer", |r| bound_ports(r).is_some()).await;
    eventually("event stream open", || m.open_streams() == 1).await;
    drop(a);
    drop(b);
    eventually("stopped", || {
        let st = n.shared.lock();
        st.names.is_empty() && st.refresher.is_none() && st.apps.is_none()
    })
    .await;
    eventually("event stream closed", || m.open_streams() == 0).await;
    assert_eq!(snapshot(&n).watched, 0);
    let reads = m.apps_reads();
    // Watched again: a new refresher starts.
    let mut again = n.lookup(&p("/web"));
    assert_eq!(*again.borrow(), Resolution::Pending);
    until(&mut again, "answer again", |r| bound_ports(r).is_some()).await;
    assert!(m.apps_reads() > reads);
}

#[tokio::test]
async fn task_host_names_are_resolved() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001).host("localhost")]);
    m.set_app("/api", false, vec![task("api.1", 31002).host("localhost")]);
    let n = namer(&m, Duration::from_secs(60));
    let mut rx = n.lookup(&p("/web"));
    let r = until(&mut rx, "resolved", |r| *r != Resolution::Pending).await;
    let Resolution::Bound(b) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(b.addrs.len(), 1, "{b:?}");
    assert!(b.addrs[0].addr.ip().is_loopback(), "{b:?}");
    assert_eq!(b.addrs[0].node(), Some("localhost"));
    // Another app on a host already resolved answers at once.
    assert_eq!(addrs(&n.lookup(&p("/api")).borrow()), [31002]);
}

#[tokio::test]
async fn a_dcos_service_account_logs_in_and_again_when_its_token_is_refused() {
    let m = FakeMarathon::start_dcos("weft-sa").await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let cred = serde_json::json!({
        "scheme": "RS256",
        "uid": "weft-sa",
        "private_key": super::auth::tests::TEST_KEY_PKCS8,
        "login_endpoint": format!("http://127.0.0.1:{}/acs/api/v1/auth/login", m.port()),
    })
    .to_string();
    let auth = Auth::from_env(
        |v| (v == "DCOS_SERVICE_ACCOUNT_CREDENTIAL").then(|| cred.clone()),
        None,
    )
    .unwrap();
    let n = namer_with(&config(&m, Duration::from_millis(100)), auth);
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "logged in", |r| {
        bound_ports(r) == Some(vec![31001])
    })
    .await;
    let logins = m.logins();
    assert_eq!(logins.len(), 1, "one login serves every request");
    let claims = super::auth::tests::verify_jwt(&logins[0]);
    assert_eq!(claims["uid"], "weft-sa");
    assert!(claims["exp"].as_u64().is_some(), "{claims}");
    assert!(m
        .authorizations()
        .iter()
        .any(|a| a.as_deref() == Some("token=fake-dcos-token-1")));

    // The token expires: Marathon answers 401, the namer logs in again and carries on.
    m.expire_token();
    eventually("logged in again", || m.logins().len() >= 2).await;
    m.set_app_quietly("/web", false, vec![task("web.2", 31002)]);
    until(&mut rx, "reads go on", |r| {
        bound_ports(r) == Some(vec![31002])
    })
    .await;
    verify_jwt_of(&m.logins()[1]);
    assert!(snapshot(&n).errors >= 1, "the refused read is counted");
}

fn verify_jwt_of(jwt: &str) {
    assert_eq!(super::auth::tests::verify_jwt(jwt)["uid"], "weft-sa");
}

/// A CA, and a server and a client certificate it signed, as PEM files in a tempdir.
struct Pki {
    dir: tempfile::TempDir,
    server: rustls::ServerConfig,
}

impl Pki {
    /// Certificates for server name `marathon.test`; the server wants a client certificate
    /// from the same CA.
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, eku| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            params.extended_key_usages = vec![eku];
            (params.signed_by(&key, &issuer).unwrap(), key)
        };
        let (server_cert, server_key) =
            leaf("marathon.test", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf("weft", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca_cert.pem());
        write("client.pem", client_cert.pem());
        write("client-key.pem", client_key.serialize_pem());

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.der().clone()], key)
            .unwrap();
        Pki { dir, server }
    }

    fn tls(&self) -> weft_config::BackendTls {
        weft_config::BackendTls {
            common_name: Some("marathon.test".into()),
            trust_certs: vec![self.dir.path().join("ca.pem")],
            client_auth: Some(weft_config::ClientAuth {
                cert_path: self.dir.path().join("client.pem"),
                key_path: self.dir.path().join("client-key.pem"),
            }),
        }
    }

    /// A TLS front for `backend` on 127.0.0.1 (TLS in front of the fake, as a load balancer
    /// or DC/OS's admin router would be); the port, and a count of handshakes that succeeded.
    async fn front(&self, backend: SocketAddr) -> (u16, std::sync::Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(self.server.clone()));
        let handshakes = std::sync::Arc::new(AtomicUsize::new(0));
        let count = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        (port, handshakes)
    }
}

#[tokio::test]
async fn tls_with_trusted_certs_and_a_client_certificate() {
    let m = FakeMarathon::start().await;
    m.set_app("/web", false, vec![task("web.1", 31001)]);
    let pki = Pki::new();
    let (port, handshakes) = pki.front(m.addr()).await;
    let mut c = config(&m, Duration::from_secs(60));
    c.port = port;
    c.tls = Some(pki.tls());
    let n = namer_with(&c, Auth::None);
    assert_eq!(snapshot(&n).backend, format!("https://127.0.0.1:{port}"));
    let mut rx = n.lookup(&p("/web"));
    until(&mut rx, "over TLS", |r| bound_ports(r) == Some(vec![31001])).await;
    assert!(handshakes.load(Ordering::SeqCst) >= 1);

    // A server whose certificate is not from a trusted CA is refused.
    let other = Pki::new();
    let mut c2 = c.clone();
    c2.tls = Some(other.tls());
    let n = namer_with(&c2, Auth::None);
    let mut rx = n.lookup(&p("/web"));
    let r = until(&mut rx, "refused", |r| *r != Resolution::Pending).await;
    assert!(
        matches!(&r, Resolution::Failed(m) if m.contains("TLS handshake")),
        "{r:?}"
    );
}
