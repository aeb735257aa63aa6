//! TLS to and from the outside: `client.tls` origination (`serverName`, `trustRoots`) and
//! ingress termination (`servers[].tls.certificates`), accepted and rejected.

use std::path::PathBuf;

use super::accepts::assert_round_trips;
use super::*;

const IDENTITY: &str = "identity: {cert: c.pem, key: k.pem, trustBundle: b.pem}\n";

fn with_client_tls(tls: &str) -> String {
    format!("{MINIMAL}    client:\n      tls: {tls}\n")
}

fn ingress(tls: &str) -> String {
    format!("routers:\n  - label: edge\n    servers:\n      - port: 8443\n        tls: {tls}\n")
}

// === origination ===

#[test]
fn origination_with_name_and_roots_needs_no_identity() {
    let c = Config::parse(
        &with_client_tls("{serverName: API.example.com, trustRoots: [ca.pem, /etc/ca2.pem]}"),
        "/etc/weft/weft.yaml",
    )
    .unwrap();
    assert_eq!(
        c.routers[0].client.tls,
        Some(ClientTlsConfig::Origin {
            server_name: Some("api.example.com".into()),
            trust_roots: vec![
                PathBuf::from("/etc/weft/ca.pem"),
                PathBuf::from("/etc/ca2.pem")
            ],
        })
    );
    assert_round_trips(&c);
}

#[test]
fn empty_client_tls_is_origination_with_defaults() {
    let c = parse(&with_client_tls("{}"));
    assert_eq!(
        c.routers[0].client.tls,
        Some(ClientTlsConfig::Origin {
            server_name: None,
            trust_roots: vec![],
        })
    );
    assert_round_trips(&c);
    let c = parse(&with_client_tls("{serverName: 10.1.2.3}"));
    assert!(matches!(
        &c.routers[0].client.tls,
        Some(ClientTlsConfig::Origin { server_name: Some(n), .. }) if n == "10.1.2.3"
    ));
}

#[test]
fn mesh_client_tls_still_needs_an_identity() {
    let c = parse(&format!(
        "{IDENTITY}{}",
        with_client_tls("{serverIdentity: 'spiffe://d/ns/a/sa/b'}")
    ));
    assert_eq!(
        c.routers[0].client.tls,
        Some(ClientTlsConfig::Mesh {
            server_identity: "spiffe://d/ns/a/sa/b".into()
        })
    );
    assert_round_trips(&c);
    let e = err(&with_client_tls("{serverIdentity: 'spiffe://d/ns/a/sa/b'}"));
    assert_err(
        &e,
        5,
        29,
        Some("routers[0].client.tls.serverIdentity"),
        "needs a top-level `identity`",
    );
}

#[test]
fn server_name_and_server_identity_are_exclusive() {
    let text = format!(
        "{IDENTITY}{}",
        with_client_tls("{serverIdentity: 'spiffe://d/ns/a/sa/b', serverName: api.example.com}")
    );
    let e = err(&text);
    assert_err(
        &e,
        6,
        65,
        Some("routers[0].client.tls.serverName"),
        "`serverName` and `serverIdentity` are mutually exclusive",
    );
    assert!(e.to_string().starts_with("weft.yaml:6:65: "), "{e}");
    let e = err(&with_client_tls(
        "{serverIdentity: 'spiffe://d/ns/a/sa/b', trustRoots: [ca.pem]}",
    ));
    assert_err(
        &e,
        5,
        65,
        Some("routers[0].client.tls.trustRoots"),
        "`trustRoots` and `serverIdentity` are mutually exclusive",
    );
}

#[test]
fn bad_server_names_and_roots_are_rejected() {
    for name in [
        "'bad name'",
        "'-x.example.com'",
        "'a..b'",
        "'*.example.com'",
    ] {
        let e = err(&with_client_tls(&format!("{{serverName: {name}}}")));
        assert_eq!(
            e.key_path(),
            Some("routers[0].client.tls.serverName"),
            "{e}"
        );
        assert!(e.message().contains("is not a DNS name"), "{e}");
    }
    let e = err(&with_client_tls("{trustRoots: []}"));
    assert_err(
        &e,
        5,
        25,
        Some("routers[0].client.tls.trustRoots"),
        "system's trust store",
    );
    let e = err(&with_client_tls("{trustRoots: [ca.pem, '']}"));
    assert_eq!(
        e.key_path(),
        Some("routers[0].client.tls.trustRoots[1]"),
        "{e}"
    );
    let e = err(&with_client_tls("{serverNmae: x}"));
    assert!(
        e.message()
            .contains("expected one of `serverIdentity`, `serverName`, `trustRoots`"),
        "{e}"
    );
}

// === ingress ===

#[test]
fn ingress_certificates_need_no_identity() {
    let c = Config::parse(
        &ingress("{certificates: [{cert: a.crt, key: a.key}, {cert: /b.crt, key: /b.key}]}"),
        "/etc/weft/weft.yaml",
    )
    .unwrap();
    let server = &c.routers[0].servers[0];
    assert_eq!(
        server.tls,
        Some(IngressTlsConfig {
            certificates: vec![
                CertificateFiles {
                    cert: "/etc/weft/a.crt".into(),
                    key: "/etc/weft/a.key".into()
                },
                CertificateFiles {
                    cert: "/b.crt".into(),
                    key: "/b.key".into()
                },
            ]
        })
    );
    assert_round_trips(&c);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v["routers"][0]["servers"][0]["tls"]["certificates"][1]["key"],
        "/b.key"
    );
}

#[test]
fn ingress_needs_certificates_with_cert_and_key() {
    let e = err(&ingress("{}"));
    assert_err(
        &e,
        5,
        14,
        Some("routers[0].servers[0].tls.certificates"),
        "missing `certificates`",
    );
    let e = err(&ingress("{certificates: []}"));
    assert_eq!(
        e.key_path(),
        Some("routers[0].servers[0].tls.certificates"),
        "{e}"
    );
    let e = err(&ingress("{certificates: [{cert: a.crt}]}"));
    assert_eq!(
        e.key_path(),
        Some("routers[0].servers[0].tls.certificates[0].key"),
        "{e}"
    );
    assert!(e.message().contains("missing `key`"), "{e}");
    let e = err(&ingress(
        "{certificates: [{cert: a.crt, key: a.key, ca: x}]}",
    ));
    assert!(e.message().contains("unknown field `ca`"), "{e}");
}

#[test]
fn ingress_on_a_router_that_requires_mesh_identities_is_rejected() {
    let text = format!(
        "{IDENTITY}routers:\n  - label: edge\n    tls: {{requireTls: true}}\n    servers:\n      - port: 4143\n      - port: 8443\n        tls: {{certificates: [{{cert: a.crt, key: a.key}}]}}\n"
    );
    let e = err(&text);
    assert_err(
        &e,
        8,
        14,
        Some("routers[0].servers[1].tls"),
        "a router of its own",
    );
    // Mesh TLS without requirements and an ingress listener may share a router.
    let text = text.replace("{requireTls: true}", "{}");
    let c = parse(&text);
    assert!(c.routers[0].servers[1].tls.is_some());
}

// === federation ===

fn federated(list: &str) -> String {
    format!(
        "{MINIMAL}identity: {{cert: c.pem, key: k.pem, trustBundle: b.pem, federation: {list}}}\n"
    )
}

#[test]
fn federation_lists_trust_domains_with_their_bundles() {
    let c = Config::parse(
        &federated("[{trustDomain: cluster-b.example, trustBundle: b/anchors.pem}]"),
        "/etc/weft/weft.yaml",
    )
    .unwrap();
    let id = c.identity.as_ref().unwrap();
    assert_eq!(
        id.federation,
        vec![FederationSettings {
            trust_domain: "cluster-b.example".into(),
            trust_bundle: PathBuf::from("/etc/weft/b/anchors.pem"),
        }]
    );
    assert_round_trips(&c);
}

#[test]
fn bad_federation_entries_name_their_key() {
    let e = err(&federated("[{trustBundle: b.pem}]"));
    assert_eq!(
        e.key_path(),
        Some("identity.federation[0].trustDomain"),
        "{e}"
    );
    let e = err(&federated(
        "[{trustDomain: spiffe://b, trustBundle: b.pem}]",
    ));
    assert!(e.message().contains("is not a trust domain"), "{e}");
    let e = err(&federated("[{trustDomain: b}]"));
    assert_eq!(
        e.key_path(),
        Some("identity.federation[0].trustBundle"),
        "{e}"
    );
    let e = err(&federated(
        "[{trustDomain: b, trustBundle: 1.pem}, {trustDomain: b, trustBundle: 2.pem}]",
    ));
    assert_eq!(
        e.key_path(),
        Some("identity.federation[1].trustDomain"),
        "{e}"
    );
    assert!(e.message().contains("listed twice"), "{e}");
}

// === per-prefix client settings ===

#[test]
fn client_configs_override_the_top_level_keys_per_prefix() {
    let c = Config::parse(
        &format!(
            "{MINIMAL}    client:\n      connectTimeout: 2s\n      tls: {{serverIdentity: spiffe://a/internal}}\n      configs:\n        - prefix: /%/port/4143/#/gateways\n          tls: {{serverIdentity: spiffe://a/gateway}}\n        - prefix: /#/fs/slow\n          connectTimeout: 5s\n{IDENTITY}"
        ),
        "/etc/weft/weft.yaml",
    )
    .unwrap();
    let client = &c.routers[0].client;
    let mesh = |id: &str| {
        Some(ClientTlsConfig::Mesh {
            server_identity: id.into(),
        })
    };
    let path = |s: &str| weft_naming::Path::read(s).unwrap();
    let gw = client.for_bound(&path("/%/port/4143/#/gateways/gw-a"));
    assert_eq!(gw.tls, mesh("spiffe://a/gateway"));
    assert_eq!(gw.connect_timeout, std::time::Duration::from_secs(2));
    let slow = client.for_bound(&path("/#/fs/slow"));
    assert_eq!(slow.connect_timeout, std::time::Duration::from_secs(5));
    assert_eq!(slow.tls, mesh("spiffe://a/internal"));
    let other = client.for_bound(&path("/%/port/4143/#/fs/books"));
    assert_eq!(other.tls, mesh("spiffe://a/internal"));
    assert!(std::ptr::eq(other, client));
    assert_round_trips(&c);
}

#[test]
fn bad_client_configs_name_their_key() {
    let with = |configs: &str| format!("{MINIMAL}    client:\n      configs: {configs}\n");
    let e = err(&with("[{connectTimeout: 2s}]"));
    assert_eq!(
        e.key_path(),
        Some("routers[0].client.configs[0].prefix"),
        "{e}"
    );
    let e = err(&with("[{prefix: /#/x, connectTimeout: 0s}]"));
    assert_eq!(
        e.key_path(),
        Some("routers[0].client.configs[0].connectTimeout"),
        "{e}"
    );
    let e = err(&with("[{prefix: /#/x, configs: []}]"));
    assert!(e.message().contains("cannot nest"), "{e}");
    let e = err(&with("[{prefix: /#/x, tls: {serverName: a.example}}]"));
    assert!(e.message().contains("only be mesh TLS"), "{e}");
    let e = err(&with(
        "[{prefix: /#/x, tls: {serverIdentity: spiffe://a/b}}]",
    ));
    assert_eq!(
        e.key_path(),
        Some("routers[0].client.configs[0].tls.serverIdentity"),
        "{e}"
    );
}
