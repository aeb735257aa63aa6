//! End to end: `weft control` (the control plane) through its HTTP API and the `weft dtab`
//! verbs, over the memory store and a real etcd (one member, two control instances sharing
//! it, a three-member cluster losing a member, and a full outage).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use support::control::{
    control_config, control_status, etcd_storage, fs_namers, proxy_config, start_control, weft_cli,
    TOKEN,
};
use support::*;
use weft_test::Etcd;

/// One API request; `token` adds `Authorization: Bearer`.
async fn call(
    api: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> TestResponse {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{api}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(TestBody::from_bytes(body)).expect("request");
    Client::http1(api).send(req).await.expect("API answers")
}

const AUTH: (&str, &str) = ("authorization", "Bearer t0ken-for-tests");
const DTAB_TEXT: (&str, &str) = ("content-type", "application/dtab");

async fn create(api: SocketAddr, ns: &str, dtab: &str) -> TestResponse {
    let path = format!("/api/1/dtabs/{ns}");
    call(
        api,
        Method::POST,
        &path,
        &[AUTH, DTAB_TEXT],
        dtab.to_owned(),
    )
    .await
}

async fn update(api: SocketAddr, ns: &str, dtab: &str, if_match: Option<&str>) -> TestResponse {
    let path = format!("/api/1/dtabs/{ns}");
    let tag = if_match.map(|v| format!("\"{v}\""));
    let mut headers = vec![AUTH, DTAB_TEXT];
    if let Some(t) = &tag {
        headers.push(("if-match", t));
    }
    call(api, Method::PUT, &path, &headers, dtab.to_owned()).await
}

async fn get_text(api: SocketAddr, ns: &str) -> TestResponse {
    let path = format!("/api/1/dtabs/{ns}");
    call(
        api,
        Method::GET,
        &path,
        &[("accept", "application/dtab")],
        "",
    )
    .await
}

fn etag(r: &TestResponse) -> String {
    r.header("etag")
        .expect("an ETag")
        .trim_matches('"')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtab_crud_through_the_http_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi");

    let r = create(api, "web", "/svc => /#/fs;").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let v1 = etag(&r);
    let dup = create(api, "web", "/svc => /#/other;").await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text());

    // JSON by default, in namerd's shape, with the version as the ETag.
    let r = call(api, Method::GET, "/api/1/dtabs/web", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(etag(&r), v1);
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!([{"prefix": "/svc", "dst": "/#/fs"}])
    );

    // An update in JSON, then the text form.
    let body = r#"[{"prefix": "/svc", "dst": "/#/fs"}, {"prefix": "/svc/books", "dst": "9 * /#/fs/v1 & 1 * /#/fs/v2"}]"#;
    let tag = format!("\"{v1}\"");
    let r = call(
        api,
        Method::PUT,
        "/api/1/dtabs/web",
        &[
            AUTH,
            ("content-type", "application/json"),
            ("if-match", &tag),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let v2 = etag(&r);
    let r = get_text(api, "web").await;
    assert_eq!(r.header("content-type"), Some("application/dtab"));
    assert_eq!(
        r.text(),
        "/svc => /#/fs;\n/svc/books => 9*/#/fs/v1 & 1*/#/fs/v2;\n"
    );
    assert_eq!(etag(&r), v2);

    // A dtab that does not parse: 400 naming line and column; nothing stored.
    let r = update(api, "web", "/svc => /#/fs;\n/svc/x => & /y", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("line 2, column 11"), "{}", r.text());
    assert_eq!(etag(&get_text(api, "web").await), v2);

    // A body over 1 MiB: 413; nothing stored.
    let huge = format!("/svc => /#/{};", "a".repeat(1 << 20));
    let r = update(api, "web", &huge, None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(etag(&get_text(api, "web").await), v2);

    // Unknown namespaces.
    assert_eq!(get_text(api, "nope").await.status, StatusCode::NOT_FOUND);
    let r = update(api, "nope", "/svc => /#/fs;", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(api, Method::GET, "/api/1/dtabs/..", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    create(api, "admin", "/svc => /$/inet/127.0.0.1/9990;").await;
    let r = call(api, Method::GET, "/api/1/dtabs", &[], "").await;
    let names: Vec<String> = serde_json::from_slice(&r.body).expect("list");
    assert_eq!(names, ["admin", "web"]);

    let r = call(api, Method::DELETE, "/api/1/dtabs/web", &[AUTH], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(api, Method::DELETE, "/api/1/dtabs/web", &[AUTH], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let metrics = get_metrics(control.admin()).await;
    assert!(
        metrics.contains("weft_control_writes_total{result=\"ok\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_control_writes_total{result=\"invalid\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_update_is_refused_with_412() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi");
    create(api, "web", "/svc => /#/v1;").await;
    // Two writers read the same version...
    let seen = etag(&get_text(api, "web").await);
    // ...the first one's update wins, the second one's is refused.
    let first = update(api, "web", "/svc => /#/alice;", Some(&seen)).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let second = update(api, "web", "/svc => /#/bob;", Some(&seen)).await;
    assert_eq!(second.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        second.text().contains("version mismatch"),
        "{}",
        second.text()
    );
    assert_eq!(
        etag(&second),
        etag(&first),
        "412 carries the current version"
    );
    assert_eq!(get_text(api, "web").await.text(), "/svc => /#/alice;\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi");
    let path = "/api/1/dtabs/web";
    let r = call(api, Method::POST, path, &[DTAB_TEXT], "/svc => /#/fs;").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("Bearer"), "{}", r.text());
    let wrong = [("authorization", "Bearer guess"), DTAB_TEXT];
    let r = call(api, Method::POST, path, &wrong, "/svc => /#/fs;").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(get_text(api, "web").await.status, StatusCode::NOT_FOUND);
    // The token file is read again when it changes.
    std::fs::write(dir.path().join("token"), "rotated-token-value\n").expect("rotate");
    let r = create(api, "web", "/svc => /#/fs;").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let rotated = [("authorization", "Bearer rotated-token-value"), DTAB_TEXT];
    let r = call(api, Method::POST, path, &rotated, "/svc => /#/fs;").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// Opens `GET ?watch=true` and returns a reader of its lines.
async fn open_watch(api: SocketAddr, ns: &str) -> WatchLines {
    let stream = tokio::net::TcpStream::connect(api).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{api}/api/1/dtabs/{ns}?watch=true"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let rsp = sender.send_request(req).await.expect("watch response");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(
        rsp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/x-ndjson"[..])
    );
    WatchLines {
        body: rsp.into_body(),
        pending: String::new(),
    }
}

struct WatchLines {
    body: hyper::body::Incoming,
    pending: String,
}

impl WatchLines {
    /// The next line as JSON (within 10 s).
    async fn next(&mut self) -> serde_json::Value {
        loop {
            if let Some(i) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=i).collect();
                return serde_json::from_str(&line).expect("a JSON line");
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("a watch line within 10 s")
                .expect("the watch goes on")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                self.pending.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Skips lines until one has dtab `dst` for its first dentry; returns it.
    async fn until_dst(&mut self, dst: &str) -> serde_json::Value {
        loop {
            let line = self.next().await;
            if line["dtab"][0]["dst"] == dst {
                return line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_each_new_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi");
    let mut watch = open_watch(api, "web").await;
    let first = watch.next().await;
    assert_eq!(first["version"], serde_json::Value::Null, "absent at first");
    let v1 = etag(&create(api, "web", "/svc => /#/one;").await);
    let line = watch.next().await;
    assert_eq!(
        (line["version"].as_str(), &line["dtab"][0]["dst"]),
        (Some(v1.as_str()), &"/#/one".into())
    );
    let v2 = etag(&update(api, "web", "/svc => /#/two;", Some(&v1)).await);
    let line = watch.next().await;
    assert_eq!(
        (line["version"].as_str(), &line["dtab"][0]["dst"]),
        (Some(v2.as_str()), &"/#/two".into())
    );
    let gauge = get_metrics(control.admin()).await;
    assert!(gauge.contains("weft_control_watches 1"), "{gauge}");
    call(api, Method::DELETE, "/api/1/dtabs/web", &[AUTH], "").await;
    assert_eq!(watch.next().await["version"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegate_and_resolve_use_the_control_planes_namers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disco = Disco::new();
    disco.write("books", "127.0.0.1 8081\n127.0.0.1 8082 * 3\n");
    let namers = fs_namers(&disco.path());
    let control = start_control(dir.path(), "{kind: memory}", &namers).await;
    let api = control.router("httpApi");
    create(api, "web", "/svc => /#/fs;").await;
    let r = call(
        api,
        Method::GET,
        "/api/1/resolve/web?path=/svc/books",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["state"], "bound", "{v}");
    assert_eq!(v["names"][0]["id"], "/#/fs/books");
    let addrs: Vec<&str> = v["names"][0]["addrs"]
        .as_array()
        .expect("addrs")
        .iter()
        .filter_map(|a| a["addr"].as_str())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:8081", "127.0.0.1:8082"]);
    let r = call(
        api,
        Method::GET,
        "/api/1/delegate/web?path=/svc/books",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("/#/fs/books"), "{}", r.text());
    let r = call(
        api,
        Method::GET,
        "/api/1/resolve/nope?path=/svc/books",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The CLI asks the same endpoint.
    let out = weft_cli(
        &[
            "dtab",
            "delegate",
            "/svc/books",
            "--control",
            &api.to_string(),
            "--namespace",
            "web",
        ],
        None,
    )
    .await;
    assert!(out.0, "{out:?}");
    assert!(out.1.contains("/#/fs/books"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtab_verbs_of_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi").to_string();
    let token = dir.path().join("token");
    let token = token.to_str().expect("utf-8 path");
    let file = dir.path().join("web.dtab");
    std::fs::write(&file, "/svc => /#/fs;\n").expect("dtab file");
    let file = file.to_str().expect("utf-8 path");
    let ctl = ["--control", api.as_str(), "--token-file", token];
    let with = |verb: &[&'static str]| -> Vec<String> {
        verb.iter()
            .map(|s| s.to_string())
            .chain(ctl.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>, stdin: Option<&'static str>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        weft_cli(&refs, stdin).await
    };

    let mut create_args = with(&["dtab", "create", "web"]);
    create_args.insert(3, file.to_owned());
    let (ok, out, err) = run(create_args.clone(), None).await;
    assert!(ok && out.starts_with("created web (version "), "{out}{err}");
    let (ok, _, err) = run(create_args, None).await;
    assert!(!ok && err.contains("already exists"), "{err}");

    let (ok, out, err) = run(with(&["dtab", "get", "web", "-o", "json"]), None).await;
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(got["dtab"][0]["dst"], "/#/fs");
    let v1 = got["version"].as_str().expect("version").to_owned();

    let mut upd = with(&["dtab", "update", "web", "-"]);
    upd.extend(["--if-version".to_owned(), v1.clone()]);
    let (ok, out, err) = run(upd.clone(), Some("/svc => /#/fs/v2;\n")).await;
    assert!(ok && out.starts_with("updated web"), "{out}{err}");
    // The same --if-version again: the dtab changed since.
    let (ok, _, err) = run(upd, Some("/svc => /#/fs/v3;\n")).await;
    assert!(!ok, "a stale --if-version must fail");
    assert!(
        err.contains("version mismatch: the dtab of web changed since you read it (now version"),
        "{err}"
    );
    let (ok, _, err) = run(with(&["dtab", "update", "web", "-"]), Some("/svc => ")).await;
    assert!(!ok && err.contains("line 1, column"), "{err}");

    let (ok, out, _) = run(with(&["dtab", "get", "web"]), None).await;
    assert!(ok && out.ends_with("/svc => /#/fs/v2;\n"), "{out}");
    let (ok, out, _) = run(with(&["dtab", "list"]), None).await;
    assert!(ok, "{out}");
    assert_eq!(out, "NAMESPACE\nweb\n");

    // Without the token: refused, and it says what to do.
    let (ok, _, err) = run(
        vec![
            "dtab".into(),
            "delete".into(),
            "web".into(),
            "--control".into(),
            api.clone(),
        ],
        None,
    )
    .await;
    assert!(!ok && err.contains("--token-file"), "{err}");
    let (ok, out, err) = run(with(&["dtab", "delete", "web"]), None).await;
    assert!(ok && out == "deleted web\n", "{out}{err}");
    let (ok, _, err) = run(with(&["dtab", "get", "web"]), None).await;
    assert!(!ok && err.contains("no such namespace: web"), "{err}");
}

// === etcd ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_instances_sharing_etcd_see_each_others_writes() {
    let etcd = Etcd::start().await;
    let (da, db) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = start_control(da.path(), &etcd_storage(&etcd), "").await;
    let b = start_control(db.path(), &etcd_storage(&etcd), "").await;
    let (api_a, api_b) = (a.router("httpApi"), b.router("httpApi"));
    let mut watch = open_watch(api_b, "web").await;
    let v1 = etag(&create(api_a, "web", "/svc => /#/one;").await);
    let line = watch.until_dst("/#/one").await;
    assert_eq!(line["version"].as_str(), Some(v1.as_str()));
    // A write through B with A's version: one store, one version sequence.
    let r = update(api_b, "web", "/svc => /#/two;", Some(&v1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let stale = update(api_a, "web", "/svc => /#/three;", Some(&v1)).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(get_text(api_a, "web").await.text(), "/svc => /#/two;\n");
    watch.until_dst("/#/two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster_with_a_member_killed_still_accepts_writes() {
    let mut etcd = Etcd::cluster(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), &etcd_storage(&etcd), "").await;
    let api = control.router("httpApi");
    let r = create(api, "web", "/svc => /#/one;").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    etcd.kill(0).await;
    // A request the client sent to the dying member may fail (503); the next ones land on
    // the members that answer. Retried unconditionally, so a 503 that was applied anyway
    // cannot turn the retry into a 412.
    let landed = eventually(Duration::from_secs(20), || async {
        let r = update(api, "web", "/svc => /#/two;", None).await;
        (r.status == StatusCode::NO_CONTENT).then(|| etag(&r))
    })
    .await
    .unwrap_or_else(|| panic!("no write landed with one member down\n{}", etcd.logs()));
    let r = get_text(api, "web").await;
    assert_eq!(
        (r.text(), etag(&r)),
        ("/svc => /#/two;\n".to_owned(), landed)
    );
    let created = eventually(Duration::from_secs(20), || async {
        let r = create(api, "other", "/svc => /#/three;").await;
        // 409: an earlier attempt answered 503 but was applied.
        matches!(r.status, StatusCode::NO_CONTENT | StatusCode::CONFLICT).then_some(())
    })
    .await;
    assert!(created.is_some(), "no create landed with one member down");
    assert_eq!(get_text(api, "other").await.text(), "/svc => /#/three;\n");
    assert_eq!(control.ready_status().await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_answers_503_and_loses_nothing() {
    let mut etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), &etcd_storage(&etcd), "").await;
    let api = control.router("httpApi");
    let v1 = etag(&create(api, "web", "/svc => /#/one;").await);
    let mut watch = open_watch(api, "web").await;
    watch.until_dst("/#/one").await;

    etcd.kill_all().await;
    let r = update(api, "web", "/svc => /#/two;", Some(&v1)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().contains("etcd unavailable"), "{}", r.text());
    let r = get_text(api, "web").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = call(control.admin(), Method::GET, "/ready", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("etcd"), "{}", ready.text());
    let metrics = get_metrics(control.admin()).await;
    assert!(
        metrics.contains("weft_control_store_errors_total{op=\"update\"} 1"),
        "{metrics}"
    );

    etcd.restart_all().await;
    let back = eventually(Duration::from_secs(20), || async {
        let r = get_text(api, "web").await;
        (r.status == StatusCode::OK).then_some(r)
    })
    .await
    .expect("the API answers again after etcd returns");
    assert_eq!(
        (back.text(), etag(&back)),
        ("/svc => /#/one;\n".to_owned(), v1.clone())
    );
    let ready = eventually(Duration::from_secs(20), || async {
        (control.ready_status().await == Some(200)).then_some(())
    })
    .await;
    assert!(ready.is_some(), "/ready stays 503 after etcd returned");
    let r = update(api, "web", "/svc => /#/two;", Some(&v1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // The watch opened before the outage resumes.
    watch.until_dst("/#/two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_client_that_never_reads_is_dropped_and_counted() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let control = start_control(dir.path(), "{kind: memory}", "").await;
    let api = control.router("httpApi");
    create(api, "web", "/svc => /#/fs;").await;
    // A client with a tiny receive buffer that asks for a watch and never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stalled = socket.connect(api).await.expect("connect");
    let req = format!("GET /api/1/dtabs/web?watch=true HTTP/1.1\r\nHost: {api}\r\n\r\n");
    stalled.write_all(req.as_bytes()).await.expect("request");
    let opened = eventually(Duration::from_secs(10), || async {
        let m = get_metrics(control.admin()).await;
        m.contains("weft_control_watches 1").then_some(())
    })
    .await;
    assert!(opened.is_some(), "the watch never opened");
    // Big versions fill the socket buffers, then the watch's own small buffer.
    let label = "x".repeat(100 * 1024);
    let mut dropped = false;
    for i in 0..400 {
        let r = update(api, "web", &format!("/svc => /#/{label}{i};"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let m = get_metrics(control.admin()).await;
        if m.contains("weft_control_watch_dropped_total 1") {
            assert!(m.contains("weft_control_watches 0"), "{m}");
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled watch was never dropped");
    // The control plane goes on serving.
    assert_eq!(get_text(api, "web").await.status, StatusCode::OK);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_config_names_file_line_and_key() {
    let exited = Weft::run_to_exit(
        bin(),
        &["control", "-c"],
        "storage:\n  kind: etcd\n  endpoint: [\"http://127.0.0.1:2379\"]\n",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(exited.status.code(), Some(2), "{}", exited.stderr);
    let file = exited.config_path.display().to_string();
    assert!(
        exited
            .stderr
            .contains(&format!("{file}:3:3: storage: unknown field `endpoint`")),
        "{}",
        exited.stderr
    );
    let checked = Weft::run_to_exit(
        bin(),
        &["control", "--check-config", "-c"],
        "storage: {kind: fs, dir: dtabs}\n",
        Duration::from_secs(20),
    )
    .await;
    assert!(checked.status.success(), "{}", checked.stderr);
    assert_eq!(checked.stdout, "config OK: storage fs\n");
}

/// One request over TLS with client config `cfg` to the control plane whose certificate
/// names `server_id`; returns the status and body.
async fn tls_call(
    api: SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    server_id: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(api).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(pki::mesh_sni(server_id), tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "control");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let rsp = sender.send_request(req).await.expect("response");
    let status = rsp.status();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_clients_of_client_ids_may_write() {
    let pki = pki::Pki::new("test.example");
    let control_id = "spiffe://test.example/control";
    let (cert, key) = pki.issue("control", control_id);
    pki.issue("deployer", "spiffe://test.example/ops/deployer");
    pki.issue("intruder", "spiffe://test.example/ops/intruder");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let config = format!(
        "httpApi: {{addr: 127.0.0.1:0}}\n\
         admin: {{addr: 127.0.0.1:0}}\n\
         grpc: {{addr: 127.0.0.1:0}}\n\
         auth:\n\
         \x20 tokenFile: '{}'\n\
         \x20 clientIds: [spiffe://test.example/ops/deployer]\n\
         \x20 tls: {{cert: '{}', key: '{}', trustBundle: '{}'}}\n",
        token.display(),
        cert.display(),
        key.display(),
        pki.bundle().display()
    );
    let control = Weft::start_control(bin(), &config).await;
    let api = control.router("httpApi");
    // One request over TLS as the client of `cfg`.
    let call = |cfg, method, headers: &'static [(&'static str, &'static str)], body| {
        tls_call(
            api,
            cfg,
            control_id,
            method,
            "/api/1/dtabs/web",
            headers,
            body,
        )
    };
    const TEXT: &[(&str, &str)] = &[DTAB_TEXT];
    const TEXT_AUTH: &[(&str, &str)] = &[DTAB_TEXT, AUTH];

    let (deployer, intruder) = (pki.client_config("deployer"), pki.client_config("intruder"));
    let (status, body) = call(deployer, Method::POST, TEXT, "/svc => /#/fs;").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(intruder, Method::PUT, TEXT, "/svc => /#/evil;").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("not in auth.clientIds"), "{body}");

    // Without a client certificate: the bearer token still works; reads need neither.
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let bundle = std::fs::read(pki.bundle()).expect("bundle");
    for anchor in rustls::pki_types::CertificateDer::pem_slice_iter(&bundle) {
        roots.add(anchor.expect("anchor")).expect("add anchor");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let anonymous = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (status, _) = call(anonymous.clone(), Method::PUT, TEXT, "/svc => /#/x;").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(anonymous.clone(), Method::PUT, TEXT_AUTH, "/svc => /#/v2;").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let accept: &'static [(&str, &str)] = &[("accept", "application/dtab")];
    let (status, body) = call(anonymous, Method::GET, accept, "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "/svc => /#/v2;\n")
    );
}

// === proxies through weft control ===

/// The whole path of issue 15: two `weft control` instances sharing one etcd, a proxy
/// binding through them (`interpreter: {kind: control}`), dtab updates through the HTTP API
/// reaching the proxy, and the proxy failing over when the instance it used is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dtab_update_through_weft_control_reaches_the_proxy_even_when_one_instance_dies() {
    let v1 = Upstream::ok("v1").await;
    let v2 = Upstream::ok("v2").await;
    let disco = Disco::new();
    disco.write("v1", &v1.fs_line());
    disco.write("v2", &v2.fs_line());
    let namers = fs_namers(&disco.path());
    let etcd = Etcd::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start_control(da.path(), &etcd_storage(&etcd), &namers).await;
    let b = start_control(db.path(), &etcd_storage(&etcd), &namers).await;
    let r = create(a.router("httpApi"), "default", "/svc/books => /#/fs/v1;").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    let state = tempfile::tempdir().unwrap();
    let addresses = [a.router("grpc").to_string(), b.router("grpc").to_string()];
    let proxy = Weft::start(
        bin(),
        &proxy_config(&addresses, &state.path().join("cache")),
    )
    .await;
    let client = proxy.http1("outbound");
    let reaches = |upstream: &'static str| {
        let client = client.clone();
        async move {
            eventually(Duration::from_secs(20), || {
                let client = client.clone();
                async move {
                    let r = client.get("books", "/").await.ok()?;
                    (r.status == 200 && r.upstream() == Some(upstream)).then_some(())
                }
            })
            .await
            .is_some()
        }
    };
    assert!(reaches("v1").await, "{}", proxy.stderr());

    // Safe rollout, asked of the instance the proxy streams from (each instance knows the
    // names routed through it): a dry run shows the routed name moving, and writes nothing...
    let api_a = a.router("httpApi");
    let dry = call(
        api_a,
        Method::PUT,
        "/api/1/dtabs/default?dryRun=true",
        &[AUTH, DTAB_TEXT],
        "/svc/books => /#/fs/v2;",
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text());
    let report: serde_json::Value = serde_json::from_slice(&dry.body).unwrap();
    let name = &report["names"][0];
    assert_eq!(name["path"], "/svc/books", "{report:#}");
    assert_eq!(name["changed"], true, "{report:#}");
    assert_eq!(name["old"]["names"][0]["id"], "/#/fs/v1", "{report:#}");
    assert_eq!(name["new"]["names"][0]["id"], "/#/fs/v2", "{report:#}");
    assert_eq!(
        get_text(api_a, "default").await.text(),
        "/svc/books => /#/fs/v1;\n"
    );
    // ...and a dtab that leaves the routed name bound to nothing is refused unless forced.
    let orphaning = "/svc/other => /#/fs/v1;";
    let refused = update(api_a, "default", orphaning, None).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("/svc/books"), "{}", refused.text());
    assert_eq!(
        get_text(api_a, "default").await.text(),
        "/svc/books => /#/fs/v1;\n"
    );

    let r = update(
        b.router("httpApi"),
        "default",
        "/svc/books => /#/fs/v2;",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(
        reaches("v2").await,
        "the update through B never reached the proxy"
    );

    // The instance the proxy talks to first goes away; changes still arrive through B.
    a.signal(weft_test::Signal::Kill);
    let _ = a.wait_exit(Duration::from_secs(10)).await;
    let r = update(
        b.router("httpApi"),
        "default",
        "/svc/books => /#/fs/v1;",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(reaches("v1").await, "no failover to B: {}", proxy.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolution_service_answers_other_hosts_only_with_read_access_any() {
    let v1 = Upstream::ok("v1").await;
    let disco = Disco::new();
    disco.write("v1", &v1.fs_line());
    for read_access in ["loopback", "any"] {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("readAccess: {read_access}\n{}", fs_namers(&disco.path()));
        let config = control_config(dir.path(), "{kind: memory}", "0.0.0.0:0", &extra);
        let control = Weft::start_control(bin(), &config).await;
        let r = create(
            control.router("httpApi"),
            "default",
            "/svc/books => /#/fs/v1;",
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        // The proxy dials the machine's own non-loopback address: its connection comes from
        // that address, as another host's would.
        let remote = SocketAddr::new(non_loopback_ip(), control.router("grpc").port());
        let state = tempfile::tempdir().unwrap();
        let config = proxy_config(&[remote.to_string()], &state.path().join("cache"));
        let proxy = Weft::start(bin(), &format!("{config}    bindingTimeout: 2s\n")).await;
        let r = proxy
            .http1("outbound")
            .get("books", "/")
            .await
            .expect("request");
        if read_access == "any" {
            let status = control_status(&proxy).await;
            assert_eq!(
                (r.status.as_u16(), r.upstream()),
                (200, Some("v1")),
                "{status:#}"
            );
            continue;
        }
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (503, None),
            "{}",
            r.text()
        );
        let refused = eventually(Duration::from_secs(10), || async {
            let status = control_status(&proxy).await;
            let error = status["lastError"].as_str().unwrap_or_default();
            error
                .contains("reads are allowed from loopback only (readAccess: loopback)")
                .then_some(())
        })
        .await;
        assert!(refused.is_some(), "{:#}", control_status(&proxy).await);
        let metrics = get_metrics(control.admin()).await;
        assert!(
            metrics.contains("weft_control_proxies_connected 0"),
            "a refused connection counts as a proxy: {metrics}"
        );
    }
}
