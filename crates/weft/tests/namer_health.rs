//! End to end: a namer's backend health is visible on `/namers.json`, in the `weft_namer_*`
//! metrics and in `weft check` (issue 14), and a failing backend keeps routing on the last
//! good endpoints. The backend here is the `fs` namer's directory: a service file that stops
//! parsing is a malformed answer from it.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;

async fn namers_json(weft: &Weft) -> Value {
    let r = weft
        .admin_client()
        .get("admin", "/namers.json")
        .await
        .expect("GET /namers.json");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("JSON")
}

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

async fn weft_check(weft: &Weft) -> (bool, String) {
    let out = tokio::process::Command::new(bin())
        .args(["check", "--admin", &weft.admin().to_string()])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run weft check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_stale_everywhere_and_keeps_routing() {
    let app = Upstream::start("books-1", Behaviour::new()).await;
    let disco = Disco::new();
    disco.write("books", &app.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");
    assert_eq!(client.get("books", "/").await.unwrap().status, 200);

    let v = namers_json(&weft).await;
    assert_eq!(v[0]["prefix"], "/#/fs", "{v:#}");
    assert_eq!(
        (v[0]["kind"].as_str(), v[0]["state"].as_str()),
        (Some("fs"), Some("ok")),
        "{v:#}"
    );
    assert_eq!(state_gauge(&weft, "ok").await, Some(1.0));
    let (ok, out) = weft_check(&weft).await;
    assert!(ok, "{out}");
    assert!(out.contains("namer") && out.contains("/#/fs"), "{out}");

    // The backend answers badly: the last good endpoints stay, and every view says stale.
    disco.write("books", "127.0.0.1 notaport\n");
    let stale = eventually(Duration::from_secs(10), || async {
        let v = namers_json(&weft).await;
        (v[0]["state"] == "stale").then_some(v)
    })
    .await
    .expect("the namer turns stale");
    assert!(
        stale[0]["lastError"].as_str().unwrap().contains("books"),
        "{stale:#}"
    );
    assert!(stale[0]["errors"].as_u64().unwrap() >= 1, "{stale:#}");
    assert!(stale[0]["failingSince"].as_f64().is_some(), "{stale:#}");
    assert_eq!(state_gauge(&weft, "stale").await, Some(1.0));
    assert_eq!(state_gauge(&weft, "ok").await, Some(0.0));
    let r = client.get("books", "/").await.unwrap();
    assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("books-1")));
    let (ok, out) = weft_check(&weft).await;
    assert!(!ok, "a stale namer fails the check: {out}");
    assert!(
        out.contains("fs backend") && out.contains("failing for"),
        "{out}"
    );

    // The backend recovers: ok again, and changes flow.
    let app2 = Upstream::start("books-2", Behaviour::new()).await;
    disco.write("books", &app2.fs_line());
    eventually(Duration::from_secs(10), || async {
        (namers_json(&weft).await[0]["state"] == "ok").then_some(())
    })
    .await
    .expect("the namer recovers");
    let moved = eventually(Duration::from_secs(10), || async {
        let r = client.get("books", "/").await.ok()?;
        (r.upstream() == Some("books-2")).then_some(())
    })
    .await;
    assert!(moved.is_some(), "traffic follows the new file");
    assert!(weft_check(&weft).await.0);
}
