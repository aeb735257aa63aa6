//! The contract every [`DtabStore`] keeps, run against each backend.

use std::time::Duration;

use tokio::sync::watch;
use weft_naming::Dtab;

use super::{DtabStore, Versioned};

fn dtab(s: &str) -> Dtab {
    Dtab::read(s).expect("test dtab parses")
}

/// Waits (bounded) until the watch shows `want` (`None`: absent, else that dtab).
pub(crate) async fn wait_for(rx: &mut watch::Receiver<Option<Versioned>>, want: Option<&Dtab>) {
    let fut = rx.wait_for(|v| v.as_ref().map(|v| &v.dtab) == want);
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(_)) => {}
        other => panic!("watch never showed {want:?}: {other:?}"),
    }
}

/// create / get / update / compare-and-set conflict / delete / watch sees each version.
pub(crate) async fn contract(store: &dyn DtabStore) {
    let a = dtab("/svc => /#/fs");
    let b = dtab("/svc/books => 9 * /#/fs/v1 & 1 * /#/fs/v2");
    let c = dtab("/svc => /$/inet/127.0.0.1/8080");
    assert!(store.get("web").await.expect("get").is_none());
    let mut rx = store.watch("web");
    assert!(rx.borrow_and_update().is_none());

    let v1 = store.create("web", &a).await.expect("create");
    assert!(!v1.is_empty());
    let dup = store.create("web", &b).await.expect_err("duplicate create");
    assert!(dup.is_exists(), "{dup}");
    let got = store.get("web").await.expect("get").expect("exists");
    assert_eq!(
        got,
        Versioned {
            version: v1.clone(),
            dtab: a.clone()
        }
    );
    assert_eq!(store.list().await.expect("list"), vec!["web".to_owned()]);
    wait_for(&mut rx, Some(&a)).await;

    let v2 = store.update("web", &b, Some(&v1)).await.expect("update");
    assert_ne!(v1, v2);
    wait_for(&mut rx, Some(&b)).await;
    assert_eq!(
        rx.borrow().as_ref().map(|v| v.version.clone()),
        Some(v2.clone())
    );
    let lost = store
        .update("web", &c, Some(&v1))
        .await
        .expect_err("stale version");
    assert!(lost.is_conflict(), "{lost}");
    assert_eq!(lost.current_version(), Some(v2.as_str()));
    assert_eq!(
        store.get("web").await.expect("get").expect("exists").dtab,
        b
    );

    let v3 = store
        .update("web", &c, None)
        .await
        .expect("unconditional update");
    wait_for(&mut rx, Some(&c)).await;
    let missing = store.update("nope", &c, None).await.expect_err("absent");
    assert!(missing.is_not_found(), "{missing}");

    let stale = store
        .delete("web", Some(&v2))
        .await
        .expect_err("stale delete");
    assert!(stale.is_conflict(), "{stale}");
    store.delete("web", Some(&v3)).await.expect("delete");
    wait_for(&mut rx, None).await;
    assert!(store.get("web").await.expect("get").is_none());
    assert!(store
        .delete("web", None)
        .await
        .expect_err("gone")
        .is_not_found());
    assert!(store.list().await.expect("list").is_empty());
    store.check().await.expect("check");
}
