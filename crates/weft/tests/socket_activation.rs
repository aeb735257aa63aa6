//! End to end: systemd socket activation (issue 16). `systemd-socket-activate` (Debian
//! package `systemd`) holds the listening socket and starts weft on the first connection,
//! passing the socket as systemd does (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`): the
//! connection made before weft existed waits in the socket's queue and is served, and the
//! socket is matched to its router by name.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::io::AsyncReadExt;

const TOOL: &str = "systemd-socket-activate";

/// A port that was free a moment ago (systemd-socket-activate refuses port 0).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `systemd-socket-activate -l 127.0.0.1:<port> --fdname=<name> weft proxy -c <config>`
/// and waits until it listens; returns the child and the port.
async fn activate(name: &str, config: &str, dir: &std::path::Path) -> (tokio::process::Child, u16) {
    assert!(
        which(TOOL),
        "{TOOL} is missing: apt-get install systemd (it ships the tool; systemd need not run)"
    );
    let file = dir.join("weft.yaml");
    std::fs::write(&file, config).expect("write config");
    for _ in 0..5 {
        let port = free_port();
        let mut child = tokio::process::Command::new(TOOL)
            .args([
                "-l",
                &format!("127.0.0.1:{port}"),
                &format!("--fdname={name}"),
            ])
            .arg(bin())
            .args(["proxy", "-c"])
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn systemd-socket-activate");
        // It prints `Listening on 127.0.0.1:<port> as 3.` once the socket is bound.
        let listening = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        if listening.is_some() {
            return (child, port);
        }
        let _ = child.kill().await;
    }
    panic!("{TOOL} never listened");
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_made_before_weft_started_is_served_on_the_inherited_socket() {
    let app = Upstream::ok("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n{}",
        router(
            "outbound",
            &format!("/svc => /$/inet/127.0.0.1/{};", app.addr().port()),
            &[]
        )
    );
    let (mut child, port) = activate("outbound", &config, dir.path()).await;
    // The probe connection above started weft; this request may also arrive before weft is
    // ready: it waits in the socket's queue, it is not refused.
    let client = Client::http1(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    for i in 0..5 {
        let r = client.get("web", "/").await.expect("request");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, Some("app")),
            "request {i}"
        );
    }
    let _ = child.kill().await;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out).await;
    }
    assert!(
        out.contains(&format!("\"outbound\":[\"127.0.0.1:{port}\"]")),
        "weft serves the inherited socket, not a port of its own: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_no_router_claims_stops_weft_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n{}",
        router("outbound", "/svc => /$/inet/127.0.0.1/1;", &[])
    );
    let (mut child, _port) = activate("nosuch", &config, dir.path()).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("weft exits")
        .expect("wait");
    assert!(!status.success());
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err).await;
    }
    assert!(err.contains("no router") && err.contains("nosuch"), "{err}");
}
