//! A real etcd (Debian package `etcd-server`): one member or a cluster of several, on
//! ephemeral ports of 127.0.0.1, each with a data directory in a tempdir.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::closed_port;

/// How long a member (or the cluster) may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// etcd processes started for a test, killed on drop.
///
/// [`Etcd::start`] runs one member; [`Etcd::cluster`] runs several that form one cluster
/// (`--initial-cluster` naming them all). Both wait until every member's `/health` answers
/// `"health":"true"` (the member sees a leader). Members can be killed and restarted on the
/// same ports and data directory, so what was stored survives a restart.
///
/// Panics naming the Debian package when `etcd` is missing: tests that use it must fail, not
/// skip, on a machine without it.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    cluster: String,
    _dir: TempDir,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

// === impl Etcd ===

impl Etcd {
    /// Starts a one-member etcd and waits until it is healthy.
    pub async fn start() -> Etcd {
        Etcd::cluster(1).await
    }

    /// Starts a cluster of `size` members and waits until every member is healthy.
    pub async fn cluster(size: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("etcd tempdir");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: closed_port(),
                peer_port: closed_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            cluster,
            _dir: dir,
        };
        for i in 0..size {
            etcd.spawn(i);
        }
        etcd.wait_healthy().await;
        etcd
    }

    /// The client URLs of all members, `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills every member.
    pub async fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i).await;
        }
    }

    /// Starts member `i` again on its ports and data directory (no wait).
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// Starts every stopped member again and waits until all are healthy.
    pub async fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            self.restart(i);
        }
        self.wait_healthy().await;
    }

    /// Waits until every running member answers `/health` with `"health":"true"`; panics
    /// with the members' logs after 30 s.
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                if health(m.client_port).await {
                    break;
                }
                if Instant::now() > deadline {
                    panic!("etcd did not become healthy\n{}", self.logs());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The members' logs, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- etcd {} ---\n{}", m.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "weft-test"])
            // Short elections so that losing a member is noticed and a new leader chosen fast.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(c) => m.child = Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("etcd is not installed: apt-get install etcd-server etcd-client")
            }
            Err(e) => panic!("cannot start etcd: {e}"),
        }
    }
}

/// Whether the member at `port` says it is healthy (`GET /health`).
async fn health(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(1),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    let req = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut body = String::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await;
    matches!(read, Ok(Ok(_))) && body.contains("\"health\":\"true\"")
}
