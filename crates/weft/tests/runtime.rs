//! Runtime flags of `weft proxy`: worker threads and busy polling.

mod support;

use std::time::Duration;

use support::*;

/// CPU seconds (user + system) the process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Busy polling keeps the runtime polling for a while after each wake-up. Requests spaced
/// out so that the runtime sleeps between them all succeed (the spinner yields and starves
/// nothing), and once traffic stops weft goes back to sleep instead of spinning for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_poll_serves_requests_then_sleeps_when_idle() {
    let app = Upstream::ok("app").await;
    let disco = Disco::new();
    disco.write("app", &app.fs_line());
    let config = outbound_config(&disco, "/svc => /#/fs;");
    let weft = Weft::start_with_args(bin(), &["--busy-poll", "2000"], &config).await;
    let client = weft.http1("outbound");
    for i in 0..20 {
        let r = client.get("app", "/").await.expect("request through weft");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.upstream(), Some("app"));
        // Longer than the window, so the runtime sleeps and wakes again.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Idle: spinning for ever would use a whole core (1 s of CPU per second).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(weft.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(weft.pid()) - before;
    assert!(used < 1.0, "{used:.2} s of CPU in 2 s idle: still spinning");
}

/// Runs `weft proxy <args>` and returns its exit code and stderr.
async fn proxy_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(bin())
        .arg("proxy")
        .args(args)
        .output()
        .await
        .expect("run weft");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An out-of-range window, or busy polling with more than one thread (where the runtime's
/// idle workers would keep restarting the window), is refused at start-up, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_poll_bad_settings_are_refused() {
    let (code, stderr) = proxy_exit(&["--busy-poll", "5000000"]).await;
    assert_eq!(code, Some(2), "clap's usage error: {stderr}");
    assert!(stderr.contains("--busy-poll"), "{stderr}");
    let (code, stderr) = proxy_exit(&["--busy-poll", "100", "--threads", "2"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--busy-poll works with --threads 1 only"),
        "{stderr}"
    );
}
