//! End to end: configuration files weft must reject, and what it says about them.

mod support;

use std::time::Duration;

use support::*;

/// Runs `weft proxy -c` on `config` and returns its stderr after checking it failed.
async fn rejected(config: &str) -> (String, String) {
    let out = Weft::run_to_exit(bin(), &["proxy", "-c"], config, Duration::from_secs(20)).await;
    assert!(
        !out.status.success(),
        "weft accepted a bad config (exit {}):\n{config}\nstderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(
        !out.stdout.contains("\"listening\""),
        "weft started listening with a bad config"
    );
    (out.stderr, out.config_path.display().to_string())
}

/// Whether `stderr` names line `n` (as `line N`, `:N:` or `line: N`).
fn names_line(stderr: &str, n: usize) -> bool {
    [format!("line {n}"), format!(":{n}:"), format!("line: {n}")]
        .iter()
        .any(|p| stderr.contains(p.as_str()))
}

#[tokio::test]
async fn unknown_config_key_is_rejected_naming_file_line_and_key() {
    let disco = Disco::new();
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n\
         routers:\n\
         \x20 - label: outbound\n\
         \x20   servers: [{{ip: 127.0.0.1, port: 0}}]\n\
         \x20   bogusKey: 3\n\
         \x20   dtab: /svc => /#/fs;\n",
        disco.path().display()
    );
    assert_eq!(config.lines().nth(6).unwrap().trim(), "bogusKey: 3");
    let (stderr, path) = rejected(&config).await;
    assert!(
        stderr.contains(&path),
        "stderr does not name the file {path}:\n{stderr}"
    );
    assert!(
        names_line(&stderr, 7),
        "stderr does not name line 7:\n{stderr}"
    );
    assert!(
        stderr.contains("bogusKey"),
        "stderr does not name the key:\n{stderr}"
    );
    assert!(
        stderr.contains("routers[0]"),
        "stderr lacks the key path routers[0]:\n{stderr}"
    );
}

#[tokio::test]
async fn bad_duration_is_rejected_naming_file_line_and_key_path() {
    let disco = Disco::new();
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n\
         routers:\n\
         \x20 - label: outbound\n\
         \x20   servers: [{{ip: 127.0.0.1, port: 0}}]\n\
         \x20   dtab: /svc => /#/fs;\n\
         \x20   client:\n\
         \x20     connectTimeout: 5 parsecs\n",
        disco.path().display()
    );
    assert_eq!(
        config.lines().nth(8).unwrap().trim(),
        "connectTimeout: 5 parsecs"
    );
    let (stderr, path) = rejected(&config).await;
    assert!(
        stderr.contains(&path),
        "stderr does not name the file {path}:\n{stderr}"
    );
    assert!(
        names_line(&stderr, 9),
        "stderr does not name line 9:\n{stderr}"
    );
    assert!(
        stderr.contains("routers[0].client.connectTimeout"),
        "stderr lacks the key path routers[0].client.connectTimeout:\n{stderr}"
    );
}

#[tokio::test]
async fn malformed_router_dtab_is_rejected() {
    let disco = Disco::new();
    let config = outbound_config(&disco, "/svc => => /#/fs;");
    let (stderr, _) = rejected(&config).await;
    assert!(
        stderr.contains("dtab"),
        "stderr does not mention the dtab:\n{stderr}"
    );
}

#[tokio::test]
async fn missing_config_file_is_reported() {
    let out = tokio::process::Command::new(bin())
        .args(["proxy", "-c", "/nonexistent/weft.yaml"])
        .output()
        .await
        .expect("run weft");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/weft.yaml"), "{stderr}");
}
