//! The discovery tests' views of a namer's health: its entry on the admin server's
//! `/namers.json`, and `weft check --admin` against the running proxy.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::{bin, eventually, Weft};

/// The entry of the namer at `prefix` on `/namers.json`; panics if there is none.
pub(crate) async fn namer_json(weft: &Weft, prefix: &str) -> Value {
    let r = weft
        .admin_client()
        .get("admin", "/namers.json")
        .await
        .expect("GET /namers.json");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    v.as_array()
        .and_then(|a| a.iter().find(|n| n["prefix"] == prefix))
        .cloned()
        .unwrap_or_else(|| panic!("no {prefix} on /namers.json: {v:#}"))
}

/// Polls `/namers.json` until the namer at `prefix` is in `state` (`ok`, `stale`, ...), for
/// at most `within`; its entry then. Panics with the last entry seen otherwise.
pub(crate) async fn namer_in_state(
    weft: &Weft,
    prefix: &str,
    state: &str,
    within: Duration,
) -> Value {
    let found = eventually(within, || async {
        let n = namer_json(weft, prefix).await;
        (n["state"] == state).then_some(n)
    })
    .await;
    match found {
        Some(n) => n,
        None => panic!(
            "{prefix} never became {state}: {:#}",
            namer_json(weft, prefix).await
        ),
    }
}

/// `weft check --admin <the proxy's admin>`: whether it passed, and what it printed.
pub(crate) async fn weft_check(weft: &Weft) -> (bool, String) {
    let out = tokio::process::Command::new(bin())
        .args(["check", "--admin", &weft.admin().to_string()])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run weft check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts that `weft check` fails on the namer at `prefix`, naming its backend as
/// `<kind> backend <backend> failing for`.
pub(crate) async fn assert_check_names_backend(
    weft: &Weft,
    prefix: &str,
    kind: &str,
    backend: &str,
) {
    let (ok, out) = weft_check(weft).await;
    assert!(!ok, "a stale {kind} namer fails the check: {out}");
    let line = out
        .lines()
        .find(|l| l.contains("namer") && l.contains(prefix))
        .unwrap_or_else(|| panic!("no namer line for {prefix}: {out}"));
    assert!(
        line.contains(&format!("{kind} backend {backend} failing for")),
        "the check names the backend: {line}"
    );
}

/// Asserts that `weft check` passes, with the namer at `prefix` ok.
pub(crate) async fn assert_check_passes(weft: &Weft, prefix: &str) {
    let (ok, out) = weft_check(weft).await;
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(prefix) && l.contains("backend") && l.contains(": ok")),
        "{out}"
    );
}
