//! End to end: `weft demo --duration` brings up the whole mesh (apps, sidecars, discovery),
//! carries load, prints the tables and stops cleanly.

use std::process::Command;

/// Runs the demo on a random `127.0.X` base (so parallel runs and a developer's running demo
/// do not collide); retries once on another base if the addresses are taken.
fn run_demo(extra: &[&str]) -> std::process::Output {
    let mut last = None;
    for _ in 0..2 {
        let base = format!("127.0.{}", fastrand::u8(100..200));
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["demo", "--duration", "8s", "--ip-base", &base])
            .args(extra)
            .output()
            .expect("run weft demo");
        let taken = String::from_utf8_lossy(&out.stderr).contains("already in use");
        if !taken {
            return out;
        }
        last = Some(out);
    }
    last.expect("at least one attempt")
}

/// The summary's `(name, column)` cells for rows whose first cell starts with `prefix`,
/// located by the header cell `column` of the table whose header starts with `header`.
fn column<'a>(summary: &'a str, header: &str, prefix: &str, col: &str) -> Vec<(&'a str, &'a str)> {
    let mut idx = None;
    let mut cells = Vec::new();
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&header) {
            idx = fields.iter().position(|f| *f == col);
        } else if let (Some(i), Some(first)) = (idx, fields.first()) {
            if first.starts_with(prefix) {
                cells.push((*first, fields.get(i).copied().unwrap_or("")));
            }
        }
    }
    cells
}

fn percent(cell: &str) -> f64 {
    cell.trim_end_matches('%')
        .parse()
        .unwrap_or_else(|_| panic!("not a percentage: {cell:?}"))
}

#[test]
fn demo_mesh_carries_load_and_avoids_the_slow_replica() {
    let out = run_demo(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weft demo failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("http://127.0."),
        "admin addresses missing:\n{stdout}"
    );
    let summary = stdout
        .split("=== summary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));

    let services = column(summary, "SERVICE", "", "SUCCESS");
    for name in ["web", "converter", "rates"] {
        let (_, success) = services
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} missing from the summary:\n{summary}"));
        assert!(percent(success) >= 95.0, "{name}: {success}\n{summary}");
    }

    let shares: Vec<(&str, f64)> = column(summary, "REPLICA", "rates-", "SHARE")
        .into_iter()
        .map(|(n, s)| (n, percent(s)))
        .collect();
    assert_eq!(shares.len(), 3, "three rates replicas expected:\n{summary}");
    let slow = shares
        .iter()
        .find(|(n, _)| *n == "rates-3")
        .expect("rates-3")
        .1;
    for (name, share) in &shares {
        if *name != "rates-3" {
            assert!(
                slow < *share,
                "slow rates-3 ({slow}%) should get less than {name} ({share}%):\n{summary}"
            );
        }
    }
    assert!(stdout.contains("mesh OK"), "{stdout}");
}

/// `--discovery dns`: the sidecars find each other through the demo's DNS server, and rates-3,
/// held out of DNS at first, gets traffic once its SRV record is added.
#[test]
fn demo_with_dns_discovery_sees_a_replica_join() {
    let out = run_demo(&["--discovery", "dns", "--join-after", "3s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weft demo failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("rates-3 joined at"), "{stdout}");
    let summary = stdout
        .split("=== summary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let requests: Vec<(&str, u64)> = column(summary, "REPLICA", "rates-", "REQUESTS")
        .into_iter()
        .map(|(n, r)| (n, r.parse().unwrap_or(0)))
        .collect();
    assert_eq!(requests.len(), 3, "{summary}");
    assert!(
        requests.iter().all(|(_, r)| *r > 0),
        "every replica, rates-3 after it joined, got requests:\n{summary}"
    );
    assert!(stdout.contains("mesh OK"), "{stdout}");
}
