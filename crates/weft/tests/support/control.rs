//! `weft control` processes, the `weft dtab` CLI, and a proxy's view of its control
//! connection, for the control plane's end-to-end tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use weft_test::{Etcd, Weft};

use super::{bin, eventually};

/// The bearer token [`control_config`] writes to its token file.
pub(crate) const TOKEN: &str = "t0ken-for-tests";

/// How long a proxy may take to show a control state (it reconnects with a backoff of up to
/// 5 s).
const PATIENCE: Duration = Duration::from_secs(20);

/// A control plane config: `storage` (a YAML flow mapping), the resolution service on `grpc`
/// (`127.0.0.1:0` for an ephemeral port), the other listeners on ephemeral ports, and the
/// token file (written in `dir`); `extra` is appended as top-level YAML.
pub(crate) fn control_config(dir: &Path, storage: &str, grpc: &str, extra: &str) -> String {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
    format!(
        "storage: {storage}\n\
         httpApi: {{addr: 127.0.0.1:0}}\n\
         admin: {{addr: 127.0.0.1:0}}\n\
         grpc: {{addr: {grpc}}}\n\
         auth: {{tokenFile: '{}'}}\n{extra}",
        token.display()
    )
}

/// Starts a control plane of [`control_config`] with every port ephemeral.
pub(crate) async fn start_control(dir: &Path, storage: &str, extra: &str) -> Weft {
    Weft::start_control(bin(), &control_config(dir, storage, "127.0.0.1:0", extra)).await
}

/// `storage` for a control plane over `etcd`.
pub(crate) fn etcd_storage(etcd: &Etcd) -> String {
    format!(
        "{{kind: etcd, endpoints: [{}], timeout: 2s}}",
        etcd.endpoints().join(", ")
    )
}

/// `namers` with one `fs` namer at `/#/fs` over `root`, as top-level YAML.
pub(crate) fn fs_namers(root: &Path) -> String {
    format!(
        "namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n",
        root.display()
    )
}

/// A proxy config: router `outbound` binding through the control instances at `addresses`
/// (namespace `default`), keeping its cache in `cache`. Router keys may be appended (at
/// four spaces).
pub(crate) fn proxy_config(addresses: &[String], cache: &Path) -> String {
    let addresses: Vec<String> = addresses.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 1s}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    \
         interpreter: {{kind: control, addresses: [{}], namespace: default, cacheFile: '{}'}}\n",
        addresses.join(", "),
        cache.display()
    )
}

/// Runs `weft <args>` with `stdin` (without `WEFT_CONTROL*` from the environment); returns
/// (success, stdout, stderr).
pub(crate) async fn weft_cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("WEFT_CONTROL")
        .env_remove("WEFT_CONTROL_TOKEN_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn weft");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.expect("stdin");
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("weft exits")
        .expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A proxy's `/namers.json` entry of the control interpreter of router `outbound`.
pub(crate) async fn control_status(weft: &Weft) -> serde_json::Value {
    let r = weft
        .admin_client()
        .get("admin", "/namers.json")
        .await
        .expect("GET /namers.json");
    let all: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    all.as_array()
        .and_then(|a| a.iter().find(|n| n["prefix"] == "/$/control/outbound"))
        .cloned()
        .unwrap_or_else(|| panic!("no /$/control/outbound on /namers.json: {all:#}"))
}

/// Waits until the proxy's control status (router `outbound`) is `state`; panics with the
/// status after 20 s.
pub(crate) async fn wait_state(weft: &Weft, state: &str) {
    let found = eventually(PATIENCE, || async move {
        (control_status(weft).await["state"] == state).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "control status never {state}: {:#}",
        control_status(weft).await
    );
}
