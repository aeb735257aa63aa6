//! End to end: live config reload (SIGHUP and a change of the config file). Routers, dtabs
//! and namers change in place without dropping a connection or a request; a bad file or a
//! change that needs a restart keeps the config in force and says why.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::*;
use weft_test::Signal;

/// How long a reload may take to show (file event, debounce, rebuild); generous for CI.
const RELOAD: Duration = Duration::from_secs(20);

/// Router `outbound` sending Host `books` to the `fs` file `dst`.
fn books_to(disco: &Disco, dst: &str) -> String {
    outbound_config(disco, &format!("/svc/books => /#/fs/{dst};"))
}

/// Results of a request loop: whether the request started after the reload was seen, and
/// the upstream that answered or the failure.
type Log = Arc<Mutex<Vec<(bool, Result<String, String>)>>>;

/// Upstreams `a` and `b`, each with its `fs` namer file of the same name.
async fn upstreams_a_and_b() -> (Upstream, Upstream, Disco) {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let disco = Disco::new();
    disco.write("a", &a.fs_line());
    disco.write("b", &b.fs_line());
    (a, b, disco)
}

/// Replaces weft's config file atomically (write a sibling, then rename), as editors and
/// config management do.
fn replace_config(weft: &Weft, text: &str) {
    let path = weft.config_path();
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write the new config");
    std::fs::rename(&tmp, path).expect("rename the new config into place");
}

/// `weft_config_reloads_total{result}`.
async fn reloads(weft: &Weft, result: &str) -> f64 {
    let text = get_metrics(weft.admin()).await;
    metrics::sum(&text, "weft_config_reloads_total", &[("result", result)])
}

/// Polls until `weft_config_reloads_total{result}` reaches `n`; panics with weft's stderr
/// if it does not within [`RELOAD`].
async fn wait_reloads(weft: &Weft, result: &str, n: f64) {
    let seen = eventually(RELOAD, || async move {
        (reloads(weft, result).await >= n).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "weft_config_reloads_total{{result={result:?}}} did not reach {n} (ok {}, error {})\n{}",
        reloads(weft, "ok").await,
        reloads(weft, "error").await,
        weft.stderr()
    );
}

/// `GET /config.json` as JSON.
async fn config_json(weft: &Weft) -> serde_json::Value {
    let r = weft
        .admin_client()
        .get(&weft.admin().to_string(), "/config.json")
        .await
        .expect("GET /config.json");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("/config.json is JSON")
}

/// Which upstream answers Host `books` through `client`; panics on any failure.
async fn books(client: &Client) -> String {
    let r = client
        .get("books", "/")
        .await
        .expect("request through weft");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    r.upstream().unwrap_or("?").to_owned()
}

/// One HTTP/1.1 connection to `addr`, kept alive across requests (no pool that could
/// replace it): a request on it fails if weft closed it.
struct KeptAlive {
    send: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl KeptAlive {
    async fn open(addr: std::net::SocketAddr) -> KeptAlive {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        KeptAlive { send }
    }

    /// Which upstream answers Host `books` on this very connection.
    async fn books(&mut self) -> String {
        self.send
            .ready()
            .await
            .expect("the kept-alive connection is still open");
        let req = Client::request("books", "/")
            .body(TestBody::empty())
            .expect("request");
        let rsp = self
            .send
            .send_request(req)
            .await
            .expect("a request on the kept-alive connection");
        assert_eq!(rsp.status(), 200);
        let upstream = rsp
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        rsp.into_body().collect().await.expect("response body");
        upstream
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dtab_edit_moves_traffic_with_no_failed_request_and_keeps_connections_open() {
    let (a, _b, disco) = upstreams_a_and_b().await;
    let weft = Weft::start(bin(), &books_to(&disco, "a")).await;
    let mut kept = KeptAlive::open(weft.router("outbound")).await;
    assert_eq!(kept.books().await, "a");
    let h2 = weft.http2("outbound");
    assert_eq!(books(&h2).await, "a");

    // Requests flow without a pause through the reload, on pooled keep-alive connections.
    // Each result is logged with whether its request started after the reload was seen.
    let stop = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let client = weft.http1("outbound");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, stop, log) = (client.clone(), stop.clone(), log.clone());
        let reloaded = reloaded.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let after = reloaded.load(Ordering::SeqCst);
                let res = match client.get("books", "/").await {
                    Ok(r) if r.status == 200 => Ok(r.upstream().unwrap_or("?").to_owned()),
                    Ok(r) => Err(format!("{} {:?} {}", r.status, r.proxy_error(), r.text())),
                    Err(e) => Err(e.to_string()),
                };
                log.lock().unwrap().push((after, res));
            }
        }));
    }
    let before = a.requests();
    eventually(RELOAD, || async {
        (a.requests() > before + 20).then_some(())
    })
    .await;

    replace_config(&weft, &books_to(&disco, "b"));
    wait_reloads(&weft, "ok", 1.0).await;
    reloaded.store(true, Ordering::SeqCst);
    // Enough requests after the reload to see where they went.
    let after = || log.lock().unwrap().iter().filter(|(a, _)| *a).count();
    eventually(RELOAD, || async { (after() > 50).then_some(()) }).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("request loop");
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    let failed: Vec<_> = log.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the reload: {:?}",
        failed.len(),
        log.len(),
        &failed[..failed.len().min(5)]
    );
    let late: Vec<_> = log
        .iter()
        .filter(|(after, r)| *after && r.as_deref().ok() != Some("b"))
        .collect();
    assert!(log.iter().filter(|(a, _)| *a).count() > 50);
    assert!(
        late.is_empty(),
        "requests after the reload still went elsewhere: {late:?}"
    );
    // The connections opened before the reload are still open, and their next requests go
    // by the new dtab.
    assert_eq!(kept.books().await, "b");
    assert_eq!(books(&h2).await, "b");
    assert_eq!(reloads(&weft, "error").await, 0.0, "{}", weft.stderr());
    let shown = config_json(&weft).await;
    assert!(
        shown["routers"][0]["dtab"]
            .as_str()
            .is_some_and(|d| d.contains("/#/fs/b")),
        "/config.json shows the config in force: {shown}"
    );
    assert_eq!(shown["reload"]["lastResult"], "ok", "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtab_change_keeps_the_upstream_connections_of_unchanged_clients() {
    let (a, b, disco) = upstreams_a_and_b().await;
    let weft = Weft::start(bin(), &books_to(&disco, "a")).await;
    let client = weft.http1("outbound");
    assert_eq!(books(&client).await, "a");
    assert_eq!(a.connections(), 1);

    // Another dentry: the router is rebuilt, its bound client for `a` carries on.
    let more = outbound_config(&disco, "/svc/books => /#/fs/a;\n/svc/authors => /#/fs/b;");
    replace_config(&weft, &more);
    wait_reloads(&weft, "ok", 1.0).await;
    let r = client.get("authors", "/").await.expect("request");
    assert_eq!(r.upstream(), Some("b"), "the new dentry applies");
    for _ in 0..5 {
        assert_eq!(books(&client).await, "a");
    }
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "the connection to `a` made before the reload serves after it"
    );

    // A change of the client settings starts new bound clients (new connections).
    let tuned = more.replace(
        "    dtab: |\n",
        "    client: {connectTimeout: 2s}\n    dtab: |\n",
    );
    replace_config(&weft, &tuned);
    wait_reloads(&weft, "ok", 2.0).await;
    assert_eq!(books(&client).await, "a");
    assert_eq!(a.connections(), 2, "new client settings, new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_response_in_flight_during_a_reload_completes() {
    let slow = Upstream::start(
        "a",
        Behaviour::new().slow_body(10, Duration::from_millis(150)),
    )
    .await;
    let b = Upstream::ok("b").await;
    let disco = Disco::new();
    disco.write("a", &slow.fs_line());
    disco.write("b", &b.fs_line());
    let weft = Weft::start(bin(), &books_to(&disco, "a")).await;
    let client = weft.http1("outbound");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("books", "/").await }
    });
    // The request has reached the upstream, whose body then takes 1.5 s to stream.
    let reached = eventually(RELOAD, || async { (slow.requests() == 1).then_some(()) }).await;
    assert!(reached.is_some(), "the request never reached the upstream");

    replace_config(&weft, &books_to(&disco, "b"));
    wait_reloads(&weft, "ok", 1.0).await;
    assert_eq!(
        books(&client).await,
        "b",
        "a new request takes the new dtab"
    );

    let r = in_flight
        .await
        .expect("request task")
        .expect("the request in flight completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), Some("a"), "it finished on the old dtab");
    assert!(r.proxy_error().is_none());
    assert_eq!(
        r.text(),
        "hello from a\n",
        "the whole streamed body arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_when_it_is_not_watched() {
    let (_a, _b, disco) = upstreams_a_and_b().await;
    let weft = Weft::start_with_args(bin(), &["--no-watch-config"], &books_to(&disco, "a")).await;
    let client = weft.http1("outbound");

    replace_config(&weft, &books_to(&disco, "b"));
    // Not watched: nothing happens until SIGHUP.
    assert_eq!(books(&client).await, "a");
    assert_eq!(reloads(&weft, "ok").await, 0.0);

    weft.signal(Signal::Hup);
    wait_reloads(&weft, "ok", 1.0).await;
    assert_eq!(books(&client).await, "b");
    let version = config_json(&weft).await["reload"]["version"].clone();

    // SIGHUP without a change: a no-op reload, counted as ok.
    weft.signal(Signal::Hup);
    wait_reloads(&weft, "ok", 2.0).await;
    assert!(
        weft.stderr().contains("config unchanged"),
        "{}",
        weft.stderr()
    );
    assert_eq!(config_json(&weft).await["reload"]["version"], version);
    assert_eq!(books(&client).await, "b");
    assert_eq!(reloads(&weft, "error").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_config_in_force_and_says_where() {
    let (_a, _b, disco) = upstreams_a_and_b().await;
    let good = books_to(&disco, "a");
    let weft = Weft::start(bin(), &good).await;
    let client = weft.http1("outbound");
    let path = weft.config_path().display().to_string();

    // Not YAML: an unclosed flow mapping on the admin line (line 1).
    replace_config(
        &weft,
        &good.replacen("shutdownGrace: 10s}", "shutdownGrace: 10s", 1),
    );
    wait_reloads(&weft, "error", 1.0).await;
    assert_eq!(books(&client).await, "a", "the old config keeps serving");
    let shown = config_json(&weft).await;
    let err = &shown["reload"]["lastError"];
    assert_eq!(err["file"], path.as_str(), "{shown}");
    assert!(
        err["line"].as_u64().is_some(),
        "a YAML error has a line: {shown}"
    );
    assert_eq!(shown["reload"]["lastResult"], "error");
    assert_eq!(err["needsRestart"], false, "{shown}");
    assert!(
        shown["routers"][0]["dtab"]
            .as_str()
            .is_some_and(|d| d.contains("/#/fs/a")),
        "/config.json still shows the config in force: {shown}"
    );

    // Valid YAML, invalid config: a bad duration, at a known line and column.
    let invalid = good.replace(
        "    dtab: |\n",
        "    client: {connectTimeout: 1x}\n    dtab: |\n",
    );
    let line = invalid
        .lines()
        .position(|l| l.contains("connectTimeout: 1x"))
        .expect("the line")
        + 1;
    replace_config(&weft, &invalid);
    wait_reloads(&weft, "error", 2.0).await;
    let shown = config_json(&weft).await;
    let err = &shown["reload"]["lastError"];
    assert_eq!(err["line"].as_u64(), Some(line as u64), "{shown}");
    let where_ = format!("{path}:{line}:");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&where_) && message.contains("routers[0].client.connectTimeout"),
        "the error names file, line and key: {message}"
    );
    assert!(
        weft.stderr().contains(&where_),
        "the log names file:line:column: {}",
        weft.stderr()
    );
    assert_eq!(books(&client).await, "a");
    assert_eq!(reloads(&weft, "ok").await, 0.0);
    let (code, out) = weft_check(&weft).await;
    assert!(
        code == Some(1) && out.contains("FAIL reload") && out.contains(&where_),
        "weft check reports the failed reload: {out}"
    );

    // Fixed: reloads.
    replace_config(&weft, &books_to(&disco, "b"));
    wait_reloads(&weft, "ok", 1.0).await;
    assert_eq!(books(&client).await, "b");
    let shown = config_json(&weft).await;
    assert_eq!(shown["reload"]["lastResult"], "ok", "{shown}");
    let (code, out) = weft_check(&weft).await;
    assert!(code == Some(0) && out.contains("ok   reload"), "{out}");
}

/// Runs `weft check --admin <weft's admin>`: its exit code and stdout.
async fn weft_check(weft: &Weft) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(bin())
        .args(["check", "--admin", &weft.admin().to_string()])
        .output()
        .await
        .expect("run weft check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_in_place_in_two_steps_is_not_an_error() {
    use std::io::Write;
    let (_a, _b, disco) = upstreams_a_and_b().await;
    let weft = Weft::start(bin(), &books_to(&disco, "a")).await;
    let client = weft.http1("outbound");

    // Truncate, write half, pause longer than the debounce (an editor, or a slow
    // `cat > weft.yaml`), write the rest: the half-written file may be read, and must be
    // read again before it counts as an error.
    let new = books_to(&disco, "b");
    let (first, rest) = new.split_at(new.len() / 2);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(weft.config_path())
        .expect("open the config in place");
    f.write_all(first.as_bytes()).expect("write the first half");
    f.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.write_all(rest.as_bytes()).expect("write the rest");
    drop(f);

    let moved = eventually(RELOAD, || async {
        (books(&client).await == "b").then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "the rewritten file never applied\n{}",
        weft.stderr()
    );
    wait_reloads(&weft, "ok", 1.0).await;
    assert_eq!(reloads(&weft, "error").await, 0.0, "{}", weft.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_address_change_is_refused_and_the_old_listener_keeps_serving() {
    let (_a, _b, disco) = upstreams_a_and_b().await;
    let weft = Weft::start(bin(), &books_to(&disco, "a")).await;
    let client = weft.http1("outbound");

    let port = closed_port();
    let moved = books_to(&disco, "b").replace(
        "servers: [{ip: 127.0.0.1, port: 0}]",
        &format!("servers: [{{ip: 127.0.0.1, port: {port}}}]"),
    );
    replace_config(&weft, &moved);
    wait_reloads(&weft, "error", 1.0).await;
    let shown = config_json(&weft).await;
    let err = &shown["reload"]["lastError"];
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("a listener's address cannot change while running")
            && message.contains(&format!("127.0.0.1:{port}"))
            && message.contains("restart")
            && message.contains("weft proxy --upgrade"),
        "{shown}"
    );
    assert_eq!(err["needsRestart"], true, "{shown}");
    assert!(weft.stderr().contains("cannot change while running"));
    // Nothing of the refused file applied, not even its dtab; the old listener serves.
    assert_eq!(books(&client).await, "a");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "weft must not listen on the new address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namer_change_applies() {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let (first, second) = (Disco::new(), Disco::new());
    first.write("books", &a.fs_line());
    second.write("books", &b.fs_line());
    let weft = Weft::start(bin(), &outbound_config(&first, "/svc => /#/fs;")).await;
    let client = weft.http1("outbound");
    assert_eq!(books(&client).await, "a");

    replace_config(&weft, &outbound_config(&second, "/svc => /#/fs;"));
    wait_reloads(&weft, "ok", 1.0).await;
    assert_eq!(books(&client).await, "b");
    assert!(
        weft.stderr().contains("namers=true"),
        "the log says the namers changed: {}",
        weft.stderr()
    );
    // The new namer is the one watched: a change in its directory applies.
    second.write("books", &a.fs_line());
    let moved = eventually(RELOAD, || async {
        (books(&client).await == "a").then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "the new fs namer does not follow its directory"
    );
}
