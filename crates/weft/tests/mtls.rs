//! Mutual TLS between two proxies: identities from the built-in CA, authorization by client
//! identity, plaintext refused under `requireTls`, and certificate rotation under load.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;
use weft_tls::ca;

const TRUST_DOMAIN: &str = "weft.test";
const WEB: &str = "spiffe://weft.test/ns/default/sa/web";
const BOOKS: &str = "spiffe://weft.test/ns/default/sa/books";
const INTRUDER: &str = "spiffe://weft.test/ns/default/sa/intruder";

/// Writes a key and a certificate chain for `id` into `dir/<name>.{key,crt}`, issued by the
/// CA in `ca_dir`; returns (cert, key) paths.
fn issue(ca_dir: &Path, dir: &Path, name: &str, id: &str) -> (PathBuf, PathBuf) {
    let (key, csr) = ca::csr(id).expect("csr");
    let chain = ca::issue(ca_dir, &csr, id, Duration::from_secs(3600)).expect("issue");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    ca::write_file(&key_path, key.as_bytes(), true).expect("write key");
    ca::write_file(&cert_path, chain.as_bytes(), false).expect("write cert");
    (cert_path, key_path)
}

fn identity_yaml(cert: &Path, key: &Path, bundle: &Path) -> String {
    format!(
        "identity: {{cert: '{}', key: '{}', trustBundle: '{}'}}\n",
        cert.display(),
        key.display(),
        bundle.display()
    )
}

struct Mesh {
    _ca: tempfile::TempDir,
    certs: tempfile::TempDir,
    ca_dir: PathBuf,
    inbound: Weft,
    outbound: Weft,
    _disco: Disco,
    _app: Upstream,
}

/// app <- inbound (mTLS required, only `web` authorized) <- outbound (identity `client_id`).
async fn mesh(client_id: &str) -> Mesh {
    mesh_with(client_id, "").await
}

/// Like [`mesh`], with `inbound_extra` YAML added to the inbound router (4-space indented).
async fn mesh_with(client_id: &str, inbound_extra: &str) -> Mesh {
    let ca_tmp = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca_tmp.path().to_path_buf();
    ca::init(&ca_dir, TRUST_DOMAIN).expect("ca init");
    let bundle = ca_dir.join(ca::ANCHOR_CERT);
    let certs = tempfile::tempdir().expect("tempdir");
    let (in_cert, in_key) = issue(&ca_dir, certs.path(), "books", BOOKS);
    let (out_cert, out_key) = issue(&ca_dir, certs.path(), "client", client_id);

    let app = Upstream::start("app", Behaviour::new().echo()).await;
    let ip = private_loopback();
    let inbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: 4143}}]\n    tls: {{requireTls: true, authorizedClients: ['{WEB}']}}\n{inbound_extra}    dtab: |\n      /svc => /$/inet/127.0.0.1/{};\n",
        identity_yaml(&in_cert, &in_key, &bundle),
        app.port()
    );
    let inbound = Weft::start(bin(), &inbound_cfg).await;
    let disco = Disco::new();
    disco.write("books", &format!("{ip} 9999\n"));
    let outbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: 4143}}]}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client: {{tls: {{serverIdentity: '{BOOKS}'}}}}\n    dtab: |\n      /svc => /#/fs;\n",
        identity_yaml(&out_cert, &out_key, &bundle),
        disco.path().display()
    );
    let outbound = Weft::start(bin(), &outbound_cfg).await;
    Mesh {
        _ca: ca_tmp,
        certs,
        ca_dir,
        inbound,
        outbound,
        _disco: disco,
        _app: app,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_client_reaches_the_app_over_mutual_tls() {
    let m = mesh(WEB).await;
    let r = m
        .outbound
        .http1("outbound")
        .get("books", "/a")
        .await
        .expect("request");
    assert_eq!(r.status.as_u16(), 200, "{:?} {:?}", r.headers, r.text());
    assert_eq!(r.echo().version, "HTTP/1.1");
    let text = get_metrics(m.inbound.admin()).await;
    assert_eq!(
        metrics::sum(
            &text,
            "weft_tls_handshakes_total",
            &[("router", "inbound"), ("result", "ok")]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_another_identity_gets_403_unauthorized() {
    let m = mesh(INTRUDER).await;
    let r = m
        .outbound
        .http1("outbound")
        .get("books", "/a")
        .await
        .expect("request");
    assert_proxy_error(&r, 403, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_require_tls_router_gets_403() {
    let m = mesh(WEB).await;
    let r = m
        .inbound
        .http1("inbound")
        .get("books", "/a")
        .await
        .expect("request");
    assert_proxy_error(&r, 403, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let m = mesh(WEB).await;
    let client = m.outbound.http1("outbound");
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..150 {
                let r = client.get("books", "/r").await.map(|r| r.status.as_u16());
                statuses.push(r.unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        })
    };
    // Rotate the inbound's certificate (a new key and serial) while requests flow.
    tokio::time::sleep(Duration::from_millis(300)).await;
    issue(&m.ca_dir, m.certs.path(), "books", BOOKS);
    let reloaded = eventually(Duration::from_secs(10), || async {
        let text = get_metrics(m.inbound.admin()).await;
        (metrics::sum(&text, "weft_identity_reloads_total", &[]) >= 1.0).then_some(())
    })
    .await;
    let statuses = load.await.expect("load task");
    assert!(
        reloaded.is_some(),
        "the inbound proxy reloaded its new certificate"
    );
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "requests failed during rotation: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_through_two_proxies_over_mutual_tls_keeps_half_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca_tmp = tempfile::tempdir().expect("tempdir");
    ca::init(ca_tmp.path(), TRUST_DOMAIN).expect("ca init");
    let bundle = ca_tmp.path().join(ca::ANCHOR_CERT);
    let certs = tempfile::tempdir().expect("tempdir");
    let (in_cert, in_key) = issue(ca_tmp.path(), certs.path(), "db", BOOKS);
    let (out_cert, out_key) = issue(ca_tmp.path(), certs.path(), "client", WEB);

    // The database: reads to EOF, then answers and closes.
    let db = echo_after_eof().await;
    let ip = private_loopback();
    let inbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: 4143}}]\n    tls: {{requireTls: true}}\n    dtab: |\n      /tcp => /$/inet/127.0.0.1/{};\n",
        identity_yaml(&in_cert, &in_key, &bundle),
        db.port()
    );
    let inbound = Weft::start(bin(), &inbound_cfg).await;
    let disco = Disco::new();
    disco.write("db", &format!("{ip} 9999\n"));
    let outbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: 4143}}]}}\n\
         routers:\n  - label: db\n    protocol: tcp\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client: {{tls: {{serverIdentity: '{BOOKS}'}}}}\n    dtab: |\n      /tcp => /#/fs/db;\n",
        identity_yaml(&out_cert, &out_key, &bundle),
        disco.path().display()
    );
    let outbound = Weft::start(bin(), &outbound_cfg).await;
    let mut s = tokio::net::TcpStream::connect(outbound.router("db"))
        .await
        .expect("connect");
    s.write_all(b"\x00\x01query").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answer within 10s")
        .expect("read");
    assert_eq!(got, b"echo:\x00\x01query");
    let text = get_metrics(inbound.admin()).await;
    assert_eq!(
        metrics::sum(
            &text,
            "weft_tls_handshakes_total",
            &[("router", "inbound"), ("result", "ok")]
        ),
        1.0,
        "the hop between the proxies was mutual TLS: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_restricted_to_other_identities_gets_403_while_others_pass() {
    let profile = "    service:\n      profiles:\n        - prefix: /svc/books\n          routes:\n            - name: admin\n              match: {pathPrefix: /admin}\n              authorizedClients: ['spiffe://weft.test/ns/ops/*']\n";
    let m = mesh_with(WEB, profile).await;
    let client = m.outbound.http1("outbound");
    let open = client.get("books", "/page").await.expect("request");
    assert_eq!(open.status.as_u16(), 200, "{:?}", open.text());
    let admin = client.get("books", "/admin/users").await.expect("request");
    assert_proxy_error(&admin, 403, "unauthorized");
}
