//! A real gRPC bidirectional stream for end-to-end tests: python `grpcio` echo server and chat
//! client (scripts in `tests/grpc/`). Needs `python3` with `grpcio` (`pip install grpcio`);
//! a test that uses them fails, naming what is missing, rather than skip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpc")
        .join(name)
}

/// Fails the test with the install line unless `python3 -c 'import grpc'` works.
pub(crate) fn require_grpcio() {
    let out = std::process::Command::new("python3")
        .args(["-c", "import grpc; print(grpc.__version__)"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs the python package grpcio: run `python3 -m pip install grpcio`\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("this test needs python3 with grpcio (`pip install grpcio`): {e}"),
    }
}

/// Starts the echo server (service `weft.test.Echo`, method `Chat`, on 127.0.0.1) and reads
/// its `listening PORT` line (20 s at most). It exits when the returned child is dropped.
pub(crate) async fn start_echo_server() -> (Child, u16) {
    require_grpcio();
    let mut child = Command::new("python3")
        .arg(script("echo_server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3 echo_server.py");
    let stdout = child.stdout.take().expect("server stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the gRPC server printed no `listening` line within 20s")
        .expect("read server stdout")
        .expect("the gRPC server exited before listening");
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected server line {line:?}"));
    (child, port)
}

/// A chat client holding one stream open through `entry` to `authority` for `secs`
/// seconds, one message each way every `interval` seconds.
pub(crate) struct ChatClient {
    child: Child,
    secs: u64,
}

impl ChatClient {
    pub(crate) fn spawn(
        entry: SocketAddr,
        authority: &str,
        secs: u64,
        interval: f64,
    ) -> ChatClient {
        require_grpcio();
        let child = Command::new("python3")
            .arg(script("chat_client.py"))
            .arg(entry.to_string())
            .arg(authority)
            .arg(secs.to_string())
            .arg(interval.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3 chat_client.py");
        ChatClient { child, secs }
    }

    /// Waits for the stream to end and returns the client's report: `status` (`OK` or the
    /// gRPC error), `sent`, `received`, `out_of_order`, `elapsed` and `max_gap` (seconds).
    pub(crate) async fn report(self) -> serde_json::Value {
        let out = tokio::time::timeout(
            Duration::from_secs(self.secs + 90),
            self.child.wait_with_output(),
        )
        .await
        .expect("the gRPC client did not finish")
        .expect("gRPC client output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no report from the gRPC client (exit {:?})\nstdout: {stdout}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}
