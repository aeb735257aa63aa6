//! End to end: systemd socket activation (issue 16). `systemd-socket-activate` (Debian
//! package `systemd`) holds the listening socket and starts weft on the first connection,
//! passing the socket as systemd does (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`): the
//! connection made before weft existed waits in the socket's queue and is served, the
//! socket is matched to its router by name, and restarts under load refuse no connection.

mod support;

use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::AsyncReadExt;

const TOOL: &str = "systemd-socket-activate";

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

/// Starts weft on `socket` as systemd does on each (re)start of a service whose `.socket`
/// unit holds the listening socket: the socket is this process's, and each generation of
/// weft gets it through `systemd-socket-activate` (which passes on descriptors it received
/// the systemd way, here from a shell that moves it to fd 3 and sets `LISTEN_PID` to its own
/// pid before exec'ing). The returned child's pid is weft's.
fn start_generation(
    socket: &std::net::TcpListener,
    config: &std::path::Path,
) -> tokio::process::Child {
    let fd = std::os::fd::OwnedFd::from(socket.try_clone().expect("clone socket"));
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec systemd-socket-activate --fdname=outbound "$0" proxy -c "$1""#)
        .arg(bin())
        .arg(config)
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sh / systemd-socket-activate")
}

/// `systemctl restart` of a socket-activated weft, three times under load: the old process
/// drains and exits, and only then is the next one started, as systemd does; connections
/// made in between wait in the socket's queue. None is refused, no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_under_load_refuse_no_connection() {
    assert!(which(TOOL), "{TOOL} is missing: apt-get install systemd");
    let app = Upstream::ok("app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weft.yaml");
    std::fs::write(
        &config,
        format!(
            "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n{}",
            router(
                "outbound",
                &format!("/svc => /$/inet/127.0.0.1/{};", app.addr().port()),
                &[]
            )
        ),
    )
    .expect("write config");
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let mut current = start_generation(&socket, &config);

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Failures = Arc::default();
    let loads: Vec<_> = [false, false, true, true]
        .into_iter()
        .map(|fresh| {
            get_loop(
                move || Client::http1(addr),
                fresh,
                stop.clone(),
                failures.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    for round in 1..=3 {
        let pid = current.id().expect("weft's pid").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(30), current.wait())
            .await
            .expect("weft drains and exits")
            .expect("wait");
        assert!(status.success(), "round {round}: {status:?}");
        current = start_generation(&socket, &config);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let (served, failures) = stop_loads(&stop, loads, &failures).await;
    let _ = current.kill().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 3 restarts, e.g. {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 100, "only {served} requests");
    eprintln!("{served} requests across 3 restarts, none failed");
}
