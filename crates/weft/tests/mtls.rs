//! Mutual TLS between two proxies: identities from the built-in CA, authorization by client
//! identity, plaintext refused under `requireTls`, and certificate rotation under load.

mod support;

use std::time::Duration;

use support::pki::{Mesh, Pki, BOOKS, TRUST_DOMAIN, WEB};
use support::*;

const INTRUDER: &str = "spiffe://weft.test/ns/default/sa/intruder";

/// app (echo) <- inbound (mTLS required, only `web` authorized) <- outbound (identity
/// `client_id`).
async fn mesh(client_id: &str) -> (Mesh, Upstream) {
    mesh_with(client_id, "").await
}

/// Like [`mesh`], with `inbound_extra` YAML added to the inbound router (4-space indented).
async fn mesh_with(client_id: &str, inbound_extra: &str) -> (Mesh, Upstream) {
    let app = Upstream::start("app", Behaviour::new().echo()).await;
    (Mesh::start(app.port(), client_id, inbound_extra).await, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_client_reaches_the_app_over_mutual_tls() {
    let (m, _app) = mesh(WEB).await;
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
    // The dashboard's service page names the peer identity the connection verified.
    let admin = m.outbound.admin().to_string();
    let r = m
        .outbound
        .admin_client()
        .get(&admin, "/service.json?router=outbound&service=/svc/books")
        .await
        .expect("service.json");
    let view: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    let tls = view["clients"][0]["tls"].as_str().unwrap_or_default();
    assert_eq!(tls, format!("mesh: {BOOKS}"), "{view:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_another_identity_gets_403_unauthorized() {
    let (m, _app) = mesh(INTRUDER).await;
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
    let (m, _app) = mesh(WEB).await;
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
    let (m, _app) = mesh(WEB).await;
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
    m.pki.issue("books", BOOKS);
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
    let pki = Pki::new(TRUST_DOMAIN);
    pki.issue("db", BOOKS);
    pki.issue("client", WEB);

    // The database: reads to EOF, then answers and closes.
    let db = echo_after_eof().await;
    let ip = private_loopback();
    let inbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: 4143}}]\n    tls: {{requireTls: true}}\n    dtab: |\n      /tcp => /$/inet/127.0.0.1/{};\n",
        pki.identity_yaml("db"),
        db.port()
    );
    let inbound = Weft::start(bin(), &inbound_cfg).await;
    let disco = Disco::new();
    disco.write("db", &format!("{ip} 9999\n"));
    let outbound_cfg = format!(
        "{}admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: 4143}}]}}\n\
         routers:\n  - label: db\n    protocol: tcp\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    client: {{tls: {{serverIdentity: '{BOOKS}'}}}}\n    dtab: |\n      /tcp => /#/fs/db;\n",
        pki.identity_yaml("client"),
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
    let (m, _app) = mesh_with(WEB, profile).await;
    let client = m.outbound.http1("outbound");
    let open = client.get("books", "/page").await.expect("request");
    assert_eq!(open.status.as_u16(), 200, "{:?}", open.text());
    let admin = client.get("books", "/admin/users").await.expect("request");
    assert_proxy_error(&admin, 403, "unauthorized");
}
