//! The built-in CA: init, CSR, issue, and the HTTPS server and client.

use std::path::Path;
use std::time::Duration;

use weft_tls::{ca, Identity, IdentityConfig};

const WEB: &str = "spiffe://weft.local/ns/default/sa/web";

fn serve_cfg(dir: &Path, token_file: &Path) -> ca::ServeConfig {
    ca::ServeConfig {
        issuer_dir: dir.to_path_buf(),
        addr: "127.0.0.1:0".parse().unwrap(),
        token_file: token_file.to_path_buf(),
        lifetime: ca::DEFAULT_LIFETIME,
        server_names: vec!["127.0.0.1".into(), "localhost".into()],
    }
}

#[test]
fn init_csr_issue_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ca::init(&dir, "weft.local").unwrap();
    assert!(
        ca::init(&dir, "weft.local").is_err(),
        "init must not overwrite a CA"
    );
    let (key, csr) = ca::csr(WEB).unwrap();
    let chain = ca::issue(&dir, &csr, WEB, Duration::from_secs(3600)).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    std::fs::write(tmp.path().join("tls.crt"), chain).unwrap();
    std::fs::write(tmp.path().join("tls.key"), key).unwrap();
    let id = Identity::load(&IdentityConfig {
        cert: tmp.path().join("tls.crt"),
        key: tmp.path().join("tls.key"),
        trust_bundle: dir.join(ca::ANCHOR_CERT),
        federation: Vec::new(),
    })
    .unwrap();
    assert_eq!(id.spiffe_id(), WEB);

    // Issuer rotation: old leaves still chain to the same anchor; new ones use the new issuer.
    let old_issuer = std::fs::read(dir.join(ca::ISSUER_CERT)).unwrap();
    ca::rotate_issuer(&dir).unwrap();
    assert_ne!(
        old_issuer,
        std::fs::read(dir.join(ca::ISSUER_CERT)).unwrap()
    );
    let reloaded = Identity::load(&IdentityConfig {
        cert: tmp.path().join("tls.crt"),
        key: tmp.path().join("tls.key"),
        trust_bundle: dir.join(ca::ANCHOR_CERT),
        federation: Vec::new(),
    });
    assert!(reloaded.is_ok(), "a leaf of the old issuer stays valid");
    let (_, csr) = ca::csr(WEB).unwrap();
    let chain = ca::issue(&dir, &csr, WEB, Duration::from_secs(3600)).unwrap();
    assert!(chain
        .ends_with(&String::from_utf8(std::fs::read(dir.join(ca::ISSUER_CERT)).unwrap()).unwrap()));
}

#[test]
fn issue_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ca::init(&dir, "weft.local").unwrap();
    let (_, csr) = ca::csr(WEB).unwrap();
    let other_td = "spiffe://evil.example/ns/default/sa/web";
    assert!(ca::issue(&dir, &csr, other_td, ca::DEFAULT_LIFETIME).is_err());
    assert!(ca::issue(&dir, "garbage", WEB, ca::DEFAULT_LIFETIME).is_err());
    let huge = "A".repeat(ca::MAX_CSR_BYTES + 1);
    assert!(ca::issue(&dir, &huge, WEB, ca::DEFAULT_LIFETIME).is_err());
    assert!(ca::issue(&dir, &csr, WEB, Duration::from_secs(1)).is_err());
    assert!(ca::issue(&dir, &csr, "not-an-id", ca::DEFAULT_LIFETIME).is_err());
}

#[tokio::test]
async fn ca_server_issues_with_a_good_token_and_refuses_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ca::init(&dir, "weft.local").unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::write(
        &tokens,
        "# bootstrap tokens\ns3cret\nscoped spiffe://weft.local/ns/x/sa/only\n",
    )
    .unwrap();
    let server = ca::serve(serve_cfg(&dir, &tokens)).await.unwrap();
    let url = format!("https://{}", server.local_addr());
    let anchor = dir.join(ca::ANCHOR_CERT);

    let (key, chain) = ca::request(&url, &anchor, "s3cret", WEB).await.unwrap();
    assert!(key.contains("PRIVATE KEY"));
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    let err = ca::request(&url, &anchor, "wrong", WEB).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let err = ca::request(&url, &anchor, "scoped", WEB).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    ca::request(&url, &anchor, "scoped", "spiffe://weft.local/ns/x/sa/only")
        .await
        .unwrap();
    assert_eq!(server.issued(), 2);
    assert_eq!(server.refused(), 2);

    // A client that does not trust the CA's anchor refuses to talk to it.
    let stranger = tmp.path().join("stranger");
    ca::init(&stranger, "weft.local").unwrap();
    assert!(
        ca::request(&url, &stranger.join(ca::ANCHOR_CERT), "s3cret", WEB)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn requested_files_load_and_a_watcher_picks_up_renewals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ca::init(&dir, "weft.local").unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, "s3cret\n").unwrap();
    let server = ca::serve(serve_cfg(&dir, &tokens)).await.unwrap();
    let renew = ca::RenewConfig {
        url: format!("https://{}", server.local_addr()),
        ca_bundle: dir.join(ca::ANCHOR_CERT),
        token_file: tokens.clone(),
        spiffe_id: WEB.into(),
        cert: tmp.path().join("tls.crt"),
        key: tmp.path().join("tls.key"),
    };
    let (nb, na) = ca::request_to_files(&renew).await.unwrap();
    assert!(na - nb >= 24 * 3600);
    let id = Identity::load(&IdentityConfig {
        cert: renew.cert.clone(),
        key: renew.key.clone(),
        trust_bundle: renew.ca_bundle.clone(),
        federation: Vec::new(),
    })
    .unwrap();
    id.watch();
    let first = id.serial();
    ca::request_to_files(&renew).await.unwrap();
    for _ in 0..200 {
        if id.reloads() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(id.reloads(), 1);
    assert_ne!(id.serial(), first);
    assert_eq!(id.rejected_reloads(), 0);
}
