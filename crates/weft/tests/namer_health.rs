//! End to end: a namer's backend health is visible on `/namers.json`, in the `weft_namer_*`
//! metrics and in `weft check` (issue 14), and a failing backend keeps routing on the last
//! good endpoints. The backend here is the `fs` namer's directory: a service file that stops
//! parsing is a malformed answer from it.

mod support;

use std::time::Duration;

use support::*;

/// The value of `weft_namer_state{namer="/#/fs",state=...}`.
async fn state_gauge(weft: &Weft, state: &str) -> Option<f64> {
    let text = get_metrics(weft.admin()).await;
    metrics::samples(&text)
        .into_iter()
        .find(|s| {
            s.name == "weft_namer_state"
                && s.label("namer") == Some("/#/fs")
                && s.label("state") == Some(state)
        })
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_stale_everywhere_and_keeps_routing() {
    let app = Upstream::start("books-1", Behaviour::new()).await;
    let disco = Disco::new();
    disco.write("books", &app.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");
    assert_eq!(client.get("books", "/").await.unwrap().status, 200);

    let v = namers::namer_json(&weft, "/#/fs").await;
    assert_eq!(
        (v["kind"].as_str(), v["state"].as_str()),
        (Some("fs"), Some("ok")),
        "{v:#}"
    );
    assert_eq!(state_gauge(&weft, "ok").await, Some(1.0));
    let (ok, out) = namers::weft_check(&weft).await;
    assert!(ok, "{out}");
    assert!(out.contains("namer") && out.contains("/#/fs"), "{out}");

    // The backend answers badly: the last good endpoints stay, and every view says stale.
    disco.write("books", "127.0.0.1 notaport\n");
    let stale = namers::namer_in_state(&weft, "/#/fs", "stale", Duration::from_secs(10)).await;
    assert!(
        stale["lastError"].as_str().unwrap().contains("books"),
        "{stale:#}"
    );
    assert!(stale["errors"].as_u64().unwrap() >= 1, "{stale:#}");
    assert!(stale["failingSince"].as_f64().is_some(), "{stale:#}");
    assert_eq!(state_gauge(&weft, "stale").await, Some(1.0));
    assert_eq!(state_gauge(&weft, "ok").await, Some(0.0));
    let r = client.get("books", "/").await.unwrap();
    assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("books-1")));
    let (ok, out) = namers::weft_check(&weft).await;
    assert!(!ok, "a stale namer fails the check: {out}");
    assert!(
        out.contains("fs backend") && out.contains("failing for"),
        "{out}"
    );

    // The backend recovers: ok again, and changes flow.
    let app2 = Upstream::start("books-2", Behaviour::new()).await;
    disco.write("books", &app2.fs_line());
    namers::namer_in_state(&weft, "/#/fs", "ok", Duration::from_secs(10)).await;
    let moved = eventually(Duration::from_secs(10), || async {
        let r = client.get("books", "/").await.ok()?;
        (r.upstream() == Some("books-2")).then_some(())
    })
    .await;
    assert!(moved.is_some(), "traffic follows the new file");
    assert!(namers::weft_check(&weft).await.0);
}
