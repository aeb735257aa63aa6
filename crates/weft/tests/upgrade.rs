//! End to end: `weft proxy --upgrade` replaces a running proxy by taking over its listening
//! sockets (docs/upgrades.md), under load, with no failed request and no refused connection:
//! HTTP/1.1 keep-alive and fresh connections, HTTP/2, and at every handoff a request in
//! flight, a gRPC stream and a WebSocket, all finish on the process they started on.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use support::grpc::{start_echo_server, ChatClient};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Router `outbound` over the fs namer, with the upgrade socket at `socket`.
fn upgrade_config(disco: &Disco, socket: &Path) -> String {
    format!(
        "{}upgrade: {{socket: '{}'}}\n",
        outbound_config(disco, "/svc => /#/fs;"),
        socket.display()
    )
}

/// A running proxy with an upgrade socket, router `outbound` sending `books` to an upstream.
struct Upgradable {
    config: String,
    socket: std::path::PathBuf,
    weft: Weft,
    _parts: (Upstream, Disco, tempfile::TempDir),
}

impl Upgradable {
    async fn start() -> Upgradable {
        let books = Upstream::ok("books").await;
        let disco = Disco::new();
        disco.write("books", &books.fs_line());
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("upgrade.sock");
        let config = upgrade_config(&disco, &socket);
        let weft = Weft::start(bin(), &config).await;
        Upgradable {
            config,
            socket,
            weft,
            _parts: (books, disco, dir),
        }
    }
}

/// `weft_process_start_time_seconds` of whichever process answers on `admin`.
async fn start_time(admin: std::net::SocketAddr) -> f64 {
    metrics::sum(
        &get_metrics(admin).await,
        "weft_process_start_time_seconds",
        &[],
    )
}

/// Runs `weft proxy --upgrade` with `config`, which must fail; asserts it exits non-zero
/// saying `why`.
async fn failed_upgrade(config: &str, why: &str) {
    let exited = Weft::run_to_exit(
        bin(),
        &["proxy", "--upgrade", "-c"],
        config,
        Duration::from_secs(30),
    )
    .await;
    assert!(!exited.status.success(), "{}", exited.stderr);
    assert!(exited.stderr.contains(why), "{}", exited.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_upgrades_under_load_fail_no_request_and_refuse_no_connection() {
    let books = Upstream::ok("books").await;
    let slow = Upstream::start("slow", Behaviour::new().delay(Duration::from_millis(1500))).await;
    let (_grpc_server, grpc_port) = start_echo_server().await;
    let chat = upgrade_echo().await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("slow", &slow.fs_line());
    disco.write("echo", &format!("127.0.0.1 {grpc_port}\n"));
    disco.write("chat", &format!("127.0.0.1 {}\n", chat.port()));
    let grpc_endpoint = format!("127.0.0.1:{grpc_port}");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let config = upgrade_config(&disco, &socket);
    let mut current = Weft::start(bin(), &config).await;
    let router = current.router("outbound");
    let admin = current.admin();

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Failures = Arc::default();
    let loads = vec![
        get_loop(
            move || Client::http1(router),
            false,
            stop.clone(),
            failures.clone(),
        ),
        get_loop(
            move || Client::http1(router),
            false,
            stop.clone(),
            failures.clone(),
        ),
        get_loop(
            move || Client::http2(router),
            false,
            stop.clone(),
            failures.clone(),
        ),
        get_loop(
            move || Client::http1(router),
            true,
            stop.clone(),
            failures.clone(),
        ),
    ];

    // At every handoff, a gRPC bidirectional stream and a WebSocket are open on the old
    // process: they stay there, and it exits once they have ended (within its
    // shutdownGrace, 10 s).
    const STREAM_SECS: u64 = 3;
    let mut streams = Vec::new();

    for round in 1..=5 {
        // A request in flight on the old process when it hands over: it must complete there.
        let in_flight = {
            let client = Client::http1(router);
            tokio::spawn(async move { client.get("slow", "/").await })
        };
        let slow_ref = &slow;
        let arrived = eventually(Duration::from_secs(5), || async move {
            (slow_ref.requests() >= round).then_some(())
        })
        .await;
        assert!(
            arrived.is_some(),
            "round {round}: the slow request never arrived"
        );

        let (mut ws, _) = websocket_upgrade(router).await;
        assert_ws_echo(&mut ws, format!("round {round}: before").as_bytes()).await;
        streams.push(ChatClient::spawn(router, "echo", STREAM_SECS, 0.25));
        // The stream has reached the process about to hand over (each process counts its own
        // attempts to the gRPC server from zero).
        let grpc_endpoint = grpc_endpoint.as_str();
        let stream_open = eventually(Duration::from_secs(20), || async move {
            let text = get_metrics(admin).await;
            let sent = metrics::sum(
                &text,
                "weft_endpoint_requests_total",
                &[("endpoint", grpc_endpoint)],
            );
            (sent >= 1.0).then_some(())
        })
        .await;
        assert!(
            stream_open.is_some(),
            "round {round}: the gRPC stream never reached the proxy"
        );

        let old_pid = current.pid();
        let started = start_time(admin).await;
        let next = Weft::start_with_args(bin(), &["--upgrade"], &config).await;
        assert_eq!(
            next.router("outbound"),
            router,
            "the same socket, not a new one"
        );
        assert_eq!(next.admin(), admin);
        // The WebSocket still runs on the old process, which waits for it.
        assert_ws_echo(
            &mut ws,
            format!("round {round}: after the handoff").as_bytes(),
        )
        .await;
        assert!(
            current.is_running(),
            "round {round}: the old process must wait for the WebSocket"
        );
        drop(ws);
        let status = current.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "round {round}: the old process (pid {old_pid}) exited with {status:?}\n{}",
            current.stderr()
        );
        // The once-per-upgrade accept events (bench/upgrade measures the gap between them).
        assert!(
            current.stderr().contains("stopped accepting"),
            "round {round}: {}",
            current.stderr()
        );
        // The admin socket, handed over too, now answers for the new process only.
        assert!(start_time(admin).await > started, "round {round}");
        let r = in_flight
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: in-flight request failed: {e}"));
        assert_eq!(r.status, 200, "round {round}: {:?}", r.proxy_error());
        current = next;
    }

    let (served, failures) = stop_loads(&stop, loads, &failures).await;
    for (round, stream) in (1..).zip(streams) {
        let report = stream.report().await;
        assert_eq!(
            report["status"], "OK",
            "round {round}: gRPC stream: {report}"
        );
        assert_eq!(
            report["received"], report["sent"],
            "round {round}: gRPC stream: {report}"
        );
        assert_eq!(
            report["out_of_order"], 0,
            "round {round}: gRPC stream: {report}"
        );
        assert!(
            report["elapsed"].as_f64().unwrap_or(0.0) >= STREAM_SECS as f64,
            "round {round}: {report}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 5 upgrades, e.g. {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 100, "only {served} requests were sent");
    // The admin socket moved too: the new process answers on it.
    assert_eq!(current.ready_status().await, Some(200));
    assert!(
        current
            .stderr()
            .contains("first connection accepted since the predecessor stopped accepting"),
        "{}",
        current.stderr()
    );
    eprintln!("{served} requests across 5 upgrades, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_a_bad_config_exits_non_zero_and_the_old_process_keeps_serving() {
    let proxy = Upgradable::start().await;
    let (config, mut weft) = (&proxy.config, proxy.weft);

    // Invalid config: refused before it even connects.
    let bad = config.replace("dtab: |", "dtab: |\n      /svc => ;;");
    failed_upgrade(&bad, "invalid config").await;

    // Valid config that cannot start: it needs an address that is taken. It has received the
    // sockets, so the old process must notice it went away and keep serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let clashing = config.replace(
        "servers: [{ip: 127.0.0.1, port: 0}]",
        &format!("servers: [{{ip: 127.0.0.1, port: 0}}, {{ip: 127.0.0.1, port: {port}}}]"),
    );
    assert_ne!(&clashing, config);
    failed_upgrade(&clashing, "cannot listen").await;

    assert!(weft.is_running(), "the old process must keep running");
    let r = weft.http1("outbound").get("books", "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(weft.ready_status().await, Some(200));
    // And it can still be upgraded afterwards.
    let next = Weft::start_with_args(bin(), &["--upgrade"], config).await;
    assert!(weft.wait_exit(Duration::from_secs(30)).await.success());
    let r = next.http1("outbound").get("books", "/").await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_a_second_upgrade_on_the_upgrade_socket_change_nothing() {
    let proxy = Upgradable::start().await;
    let (config, socket, mut weft) = (&proxy.config, &proxy.socket, proxy.weft);
    let socket_ref = &socket;
    eventually(Duration::from_secs(5), || async move {
        socket_ref.exists().then_some(())
    })
    .await
    .expect("the upgrade socket never appeared");

    // Garbage: dropped without an answer.
    let mut garbage = tokio::net::UnixStream::connect(&socket).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    let n = BufReader::new(&mut garbage)
        .read_line(&mut reply)
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "garbage got an answer: {reply:?}");

    // A successor that says hello and then stalls holds the upgrade...
    let mut stalled = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stalled
        .write_all(b"{\"hello\":\"weft-upgrade/1\",\"pid\":1}\n")
        .await
        .unwrap();
    let mut offer = String::new();
    BufReader::new(&mut stalled)
        .read_line(&mut offer)
        .await
        .unwrap();
    assert!(offer.contains("\"sockets\""), "{offer}");
    // ...so a second `--upgrade` is turned away and exits non-zero.
    failed_upgrade(config, "already in progress").await;
    // The stalled one goes away: nothing changed, and the next upgrade goes through.
    drop(stalled);
    assert!(weft.is_running());
    let r = weft.http1("outbound").get("books", "/").await.unwrap();
    assert_eq!(r.status, 200);
    // (The old process learns of the close asynchronously: a start that races it is turned
    // away like the second one above, so allow a few.)
    let mut next = None;
    for _ in 0..5 {
        match Weft::try_start_with_args(bin(), &["--upgrade"], config).await {
            Ok(w) => {
                next = Some(w);
                break;
            }
            Err(e) => assert!(e.contains("already in progress"), "{e}"),
        }
    }
    let next = next.expect("no upgrade went through after the stalled successor left");
    assert!(weft.wait_exit(Duration::from_secs(30)).await.success());
    assert_eq!(next.ready_status().await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_open_across_an_upgrade_runs_on_the_old_process_until_it_closes() {
    let chat = upgrade_echo().await;
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("chat", &format!("127.0.0.1 {}", chat.port()));
    disco.write("books", &books.fs_line());
    let dir = tempfile::tempdir().unwrap();
    let config = upgrade_config(&disco, &dir.path().join("upgrade.sock"));
    let mut old = Weft::start(bin(), &config).await;
    let router = old.router("outbound");
    let (mut ws, _) = websocket_upgrade(router).await;
    assert_ws_echo(&mut ws, b"before").await;

    let new = Weft::start_with_args(bin(), &["--upgrade"], &config).await;
    // New connections reach the new process...
    let r = Client::http1(router).get("books", "/").await.unwrap();
    assert_eq!(r.status, 200);
    // ...while the old one drains, keeping the tunnel it carries.
    let old_ref = &old;
    let draining = eventually(Duration::from_secs(5), || async move {
        old_ref.stderr().contains("draining").then_some(())
    })
    .await;
    assert!(draining.is_some(), "{}", old.stderr());
    assert!(old.is_running(), "the old process must wait for the tunnel");
    assert_ws_echo(&mut ws, b"after the handoff").await;
    drop(ws);
    let status = old.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", old.stderr());
    assert_eq!(new.ready_status().await, Some(200));
}

/// What a stranger does on the upgrade socket: connects, says a valid hello, and reports what
/// came back (`argv[1]`: the socket's path).
const STRANGER: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
got = b""
try:
    s.sendall(b'{"hello":"weft-upgrade/1","pid":1}\n')
    while chunk := s.recv(4096):
        got += chunk
except ConnectionError:
    pass
print(json.dumps({"connected": True, "received": got.decode(errors="replace")}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_on_the_upgrade_socket_gets_nothing_and_changes_nothing() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: acting as another user (setpriv) needs root");
        return;
    }
    let proxy = Upgradable::start().await;
    let (config, socket, mut weft) = (&proxy.config, &proxy.socket, proxy.weft);
    let socket_ref = &socket;
    eventually(Duration::from_secs(5), || async move {
        socket_ref.exists().then_some(())
    })
    .await
    .expect("the upgrade socket never appeared");
    // Open the way for uid 65534 as a careless deployment might (a shared directory, a
    // socket writable by all): only the peer credential check is left to turn it away.
    use std::os::unix::fs::PermissionsExt;
    let dir = socket.parent().expect("the socket's directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o777)).unwrap();

    // The system's python, which another user can run (a version manager's shim under
    // /root may not be).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            python,
            "-c",
        ])
        .arg(STRANGER)
        .arg(socket)
        .output()
        .await
        .expect("run setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the stranger could not run: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    assert_eq!(report["connected"], true, "{report}");
    assert_eq!(
        report["received"], "",
        "the stranger got an answer: {report}"
    );
    let weft_ref = &weft;
    let noticed = eventually(Duration::from_secs(5), || async move {
        weft_ref
            .stderr()
            .contains("a process of another user connected")
            .then_some(())
    })
    .await;
    assert!(noticed.is_some(), "{}", weft.stderr());

    // Nothing changed: the proxy serves, and a real upgrade goes through.
    assert!(weft.is_running());
    let r = weft.http1("outbound").get("books", "/").await.unwrap();
    assert_eq!(r.status, 200);
    let next = Weft::start_with_args(bin(), &["--upgrade"], config).await;
    assert!(weft.wait_exit(Duration::from_secs(30)).await.success());
    assert_eq!(next.ready_status().await, Some(200));
}
