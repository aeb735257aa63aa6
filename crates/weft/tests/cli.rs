//! End to end: the operator's CLI (`weft stat`, `routes`, `top`, `check`, `version --proxy`)
//! against real proxies carrying real traffic.

mod support;

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::task::JoinHandle;

/// How long one CLI run may take (a window is at most a second here).
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Proxies routing `/svc/books` to a good upstream; `/svc/missing` has no discovery file, so
/// each request to it fails at once (502 `no-such-service`).
struct Fleet {
    wefts: Vec<Weft>,
    _books: Upstream,
    _disco: Disco,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let books = Upstream::ok("books").await;
        let disco = Disco::new();
        disco.write("books", &books.fs_line());
        let mut wefts = Vec::new();
        for _ in 0..n {
            wefts.push(start_fs_weft(&disco).await);
        }
        Fleet {
            wefts,
            _books: books,
            _disco: disco,
        }
    }

    fn admins(&self) -> Vec<String> {
        self.wefts.iter().map(|w| w.admin().to_string()).collect()
    }

    /// `--admin A --admin B ...`
    fn admin_args(&self) -> Vec<String> {
        self.admins()
            .into_iter()
            .flat_map(|a| ["--admin".to_owned(), a])
            .collect()
    }

    /// Sends requests through every proxy until the returned guard is dropped: to books
    /// (200) every 5ms and to missing (502) every 20ms, each in its own loop.
    fn traffic(&self) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in &self.wefts {
            for (service, every) in [("books", 5), ("missing", 20)] {
                let client = w.http1("outbound");
                let flag = stop.clone();
                tasks.push(tokio::spawn(async move {
                    while !flag.load(Ordering::Relaxed) {
                        let _ = client.get(service, "/").await;
                        tokio::time::sleep(Duration::from_millis(every)).await;
                    }
                }));
            }
        }
        Traffic { stop, tasks }
    }
}

/// Background traffic; stops when dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Runs `weft <args>` to completion with stdout and stderr captured.
async fn weft_cli<S: AsRef<str>>(args: &[S]) -> Output {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let child = tokio::process::Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn weft");
    match tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("wait for weft"),
        Err(_) => panic!("weft {args:?} did not finish within {CLI_TIMEOUT:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", describe(out)))
}

/// The whitespace-separated cells of each line.
fn cells(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn args(fixed: &[&str], more: &[String]) -> Vec<String> {
    fixed
        .iter()
        .map(|s| (*s).to_owned())
        .chain(more.iter().cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_json_sums_a_fleet_and_reports_the_unreachable_member() {
    let fleet = Fleet::start(2).await;
    let down = format!("127.0.0.1:{}", closed_port());
    let _traffic = fleet.traffic();
    let mut a = args(
        &["stat", "-o", "json", "--window", "1s"],
        &fleet.admin_args(),
    );
    a.extend(["--admin".to_owned(), down.clone()]);
    let out = weft_cli(&a).await;
    assert!(out.status.success(), "{}", describe(&out));
    let v = json(&out);

    let mut read: Vec<String> = v["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    read.sort();
    let mut want = fleet.admins();
    want.sort();
    assert_eq!(read, want, "{v:#}");

    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v:#}");
    assert_eq!(problems[0]["source"], down.as_str());
    assert!(
        text(&out.stderr).contains(&down),
        "the problem is on stderr too\n{}",
        describe(&out)
    );

    let rows = v["rows"].as_array().unwrap();
    let outbound = rows
        .iter()
        .find(|r| r["router"] == "outbound")
        .unwrap_or_else(|| panic!("no outbound row: {v:#}"));
    assert!(outbound["requests"].as_f64().unwrap() >= 8.0, "{v:#}");
    assert!(outbound["rps"].as_f64().unwrap() > 0.0, "{v:#}");
    let success = outbound["success"].as_f64().unwrap();
    assert!(
        success > 0.5 && success < 1.0,
        "books ok, missing fails: {v:#}"
    );
    for q in ["p50", "p95", "p99"] {
        let lat = outbound[format!("latency_{q}_seconds")].as_f64();
        assert!(lat.is_some_and(|l| l > 0.0 && l < 5.0), "{q}: {v:#}");
    }
    assert!(outbound["open_connections"].as_f64().is_some(), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_services_and_routes_print_tables() {
    let fleet = Fleet::start(1).await;
    let _traffic = fleet.traffic();

    let out = weft_cli(&args(
        &["stat", "services", "--window", "500ms"],
        &fleet.admin_args(),
    ))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let t = cells(&text(&out.stdout));
    assert_eq!(
        t[0],
        [
            "SERVICE",
            "ROUTER",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99"
        ]
    );
    let books = t.iter().find(|r| r[0] == "/svc/books").expect("books row");
    assert_eq!(books[1..3], ["outbound", "100.00%"], "{}", describe(&out));
    let missing = t
        .iter()
        .find(|r| r[0] == "/svc/missing")
        .expect("missing row");
    assert_eq!(missing[2], "0.00%", "{}", describe(&out));

    let out = weft_cli(&args(&["routes", "--window", "500ms"], &fleet.admin_args())).await;
    assert!(out.status.success(), "{}", describe(&out));
    let t = cells(&text(&out.stdout));
    assert_eq!(
        t[0],
        [
            "ROUTE",
            "SERVICE",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99"
        ]
    );
    let books = t
        .iter()
        .find(|r| r[1] == "/svc/books")
        .expect("books route");
    assert_eq!(books[0], "[default]");
    assert_eq!(books[2], "100.00%");
    assert!(books[3].parse::<f64>().unwrap() > 0.0, "{}", describe(&out));
    assert!(books[4].ends_with("ms") || books[4].ends_with('s'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_prints_one_table_per_window_when_not_a_terminal() {
    let fleet = Fleet::start(1).await;
    let _traffic = fleet.traffic();
    let out = weft_cli(&args(
        &["top", "--window", "500ms", "--iterations", "2"],
        &fleet.admin_args(),
    ))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains('\x1b'), "no screen clearing in a pipe");
    assert_eq!(stdout.matches("weft top:").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("SERVICE").count(), 2, "{stdout}");
    let t = cells(&stdout);
    // /svc/books gets more requests than /svc/missing: it comes first.
    let first = t
        .iter()
        .find(|r| r.first().is_some_and(|c| c.starts_with("/svc/")))
        .expect("a row");
    assert_eq!(
        first[..3],
        ["/svc/books", "[default]", "outbound"],
        "{stdout}"
    );

    let out = weft_cli(&args(
        &[
            "top",
            "--window",
            "200ms",
            "--iterations",
            "2",
            "-o",
            "json",
        ],
        &fleet.admin_args(),
    ))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1]["rows"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_readable_proxy_exits_non_zero_and_a_foreign_page_is_reported() {
    let down = format!("127.0.0.1:{}", closed_port());
    let out = weft_cli(&["stat", "--window", "100ms", "--admin", &down]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&down) && stderr.contains("no proxy could be read"));

    // An HTTP server that is not a weft proxy: its page has no weft metrics. The command
    // reports it and goes on with the real proxy.
    let fleet = Fleet::start(1).await;
    let stranger = Upstream::ok("stranger").await;
    let mut a = args(&["stat", "--window", "100ms"], &fleet.admin_args());
    a.extend(["--admin".to_owned(), stranger.addr().to_string()]);
    let out = weft_cli(&a).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&stranger.addr().to_string()) && stderr.contains("no weft_ metrics"),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).starts_with("ROUTER"),
        "{}",
        describe(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_file_with_comments_and_a_bad_line() {
    let fleet = Fleet::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.txt");
    let admins = fleet.admins();
    std::fs::write(
        &file,
        format!(
            "# two proxies\n{}\n\n{}   # the second\nnot-an-address\n",
            admins[0], admins[1]
        ),
    )
    .unwrap();
    let out = weft_cli(&[
        "version",
        "--proxy",
        "--fleet",
        file.to_str().unwrap(),
        "-o",
        "json",
    ])
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let v = json(&out);
    assert_eq!(v["versions"][0]["proxies"], 2, "{v:#}");
    assert!(
        v["problems"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("fleet.txt:5"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_proxy_counts_proxies_per_version() {
    let fleet = Fleet::start(2).await;
    let out = weft_cli(&["version"]).await;
    assert_eq!(
        text(&out.stdout),
        format!("weft {}\n", env!("CARGO_PKG_VERSION"))
    );

    let down = format!("127.0.0.1:{}", closed_port());
    let mut a = args(&["version", "--proxy"], &fleet.admin_args());
    a.extend(["--admin".to_owned(), down.clone()]);
    let out = weft_cli(&a).await;
    assert!(out.status.success(), "{}", describe(&out));
    let t = cells(&text(&out.stdout));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(t[2], ["VERSION", "PROXIES", "ADMIN"], "{}", describe(&out));
    assert_eq!(
        t[3],
        [version.to_owned(), "2".to_owned(), fleet.admins().join(",")],
        "{}",
        describe(&out)
    );
    assert_eq!(t[4], ["unreachable", "1", down.as_str()]);

    let out = weft_cli(&["version", "--proxy", "--admin", &down]).await;
    assert!(!out.status.success(), "{}", describe(&out));
}

/// A config with an fs namer on `disco` and one router on port 0 (and admin on port 0).
fn config_file(dir: &std::path::Path, name: &str, disco: &str, dtab: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "admin: {{ip: 127.0.0.1, port: 0}}\n\
             namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: {disco}}}\n\
             routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n\
             \x20   dtab: |\n      {dtab}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("disco")).unwrap();
    std::fs::write(dir.path().join("disco/books"), "127.0.0.1 8080\n").unwrap();
    let good = config_file(dir.path(), "good.yaml", "disco", "/svc => /#/fs;");
    let out = weft_cli(&["check", "-c", &good]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for check in ["config", "dtab", "namer"] {
        assert!(
            stdout.contains(&format!("ok   {check} ")),
            "{check}\n{stdout}"
        );
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        !stdout.contains("admin"),
        "-c alone checks no proxy: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bad = config_file(dir.path(), "bad.yaml", "disco", "/svc => => /#/fs;");
    let out = weft_cli(&["check", "-c", &bad, "--admin", "127.0.0.1:1"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failures.len(), 2, "{}", describe(&out));
    assert!(failures[0].starts_with("FAIL config ") && failures[0].contains("bad.yaml"));
    assert!(failures[1].starts_with("FAIL admin 127.0.0.1:1: "));
    assert!(failures.iter().all(|l| l.contains("(hint: ")), "{stdout}");

    // A valid file whose namer directory is missing, and another whose service file has
    // a bad line: every problem is its own line.
    std::fs::create_dir(dir.path().join("disco")).unwrap();
    std::fs::write(dir.path().join("disco/books"), "127.0.0.1 http\n").unwrap();
    std::fs::write(dir.path().join("disco/rates"), "127.0.0.1\n").unwrap();
    let bad_files = config_file(dir.path(), "files.yaml", "disco", "/svc => /#/fs;");
    let missing = config_file(dir.path(), "missing.yaml", "nowhere", "/svc => /#/fs;");
    for (file, want) in [(bad_files, 2), (missing, 1)] {
        let out = weft_cli(&["check", "-c", &file, "-o", "json"]).await;
        assert!(!out.status.success(), "{}", describe(&out));
        let v = json(&out);
        let failed: Vec<&Value> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .collect();
        assert_eq!(failed.len(), want, "{v:#}");
        assert!(failed.iter().all(|c| c["check"] == "namer"), "{v:#}");
        assert_eq!(v["ok"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_a_live_fleet() {
    let fleet = Fleet::start(2).await;
    let out = weft_cli(&args(&["check"], &fleet.admin_args())).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for admin in fleet.admins() {
        assert!(
            stdout.contains(&format!("ok   admin {admin}: ")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("ok   ready {admin}: ")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("ok   version fleet: all 2 proxies read run"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_command_quietly() {
    let fleet = Fleet::start(1).await;
    let mut child = std::process::Command::new(bin())
        .args(args(
            &["top", "--window", "100ms", "--iterations", "50"],
            &fleet.admin_args(),
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    // The reader goes away before the first table, like `weft top | head -0`.
    drop(child.stdout.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{}", describe(&out));
}
