//! `weft proxy --upgrade`: a binary upgrade by socket handoff, as HAProxy (`-x`), Envoy (hot
//! restart) and pingora (`--upgrade`) do it. See docs/upgrades.md.
//!
//! The running proxy (the *predecessor*) listens on a Unix socket (`upgrade.socket`). Its
//! successor connects, and, one JSON line each:
//! 1. successor: `{"hello":"weft-upgrade/1","pid":P}`;
//! 2. predecessor: `{"pid":P,"sockets":["outbound","inbound","admin"]}`, with one listening
//!    socket per name attached (`SCM_RIGHTS`), in that order;
//! 3. the successor serves on them (binding any address its config adds), then says
//!    `{"ready":true}`;
//! 4. the predecessor stops accepting and says `{"draining":true}`, then drains as on
//!    `SIGTERM` and exits 0. Its listening sockets are never closed: the successor holds
//!    them, so the kernel's accept queue is never reset and no connection is refused.
//!
//! If the successor goes away before step 3, the predecessor keeps serving. One upgrade at a
//! time: a second successor is told so and turned away. A peer of another user (checked with
//! `SO_PEERCRED`), or one that does not say hello, gets nothing and changes nothing.

mod fds;

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use weft_proxy::Inherited;

const PROTOCOL: &str = "weft-upgrade/1";
/// How long a peer has to say hello before it is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a successor may take from receiving the sockets to serving on them (it builds its
/// namers and routers and loads its certificates meanwhile).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Serialize, Deserialize)]
struct Hello {
    hello: String,
    pid: u32,
}

#[derive(Serialize, Deserialize)]
struct Offer {
    pid: u32,
    #[serde(default)]
    sockets: Vec<String>,
    /// Set instead of `sockets` when the predecessor turns the successor away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Ready {
    ready: bool,
}

#[derive(Serialize, Deserialize)]
struct Draining {
    draining: bool,
}

/// The successor's end of a handoff in progress: it holds the predecessor's sockets and must
/// say [`Successor::ready`] once it serves on them.
pub(crate) struct Successor {
    stream: UnixStream,
    predecessor: u32,
}

/// Connects to the running proxy's upgrade socket at `path` and receives its listening
/// sockets, named after their routers' labels (and `admin`).
///
/// # Errors
/// No proxy listens at `path`, it turned this process away (an upgrade already in progress),
/// or what it sent is not a set of listening sockets.
pub(crate) async fn take_over(path: &Path) -> anyhow::Result<(Inherited, Successor)> {
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "--upgrade: no running proxy at the upgrade socket {}",
            path.display()
        )
    })?;
    let hello = Hello {
        hello: PROTOCOL.into(),
        pid: std::process::id(),
    };
    write_json(&mut stream, &hello).await?;
    let (line, received) = fds::recv_with_fds(&mut stream)
        .await
        .context("--upgrade: the running proxy closed the upgrade socket")?;
    let offer: Offer = serde_json::from_slice(&line)
        .context("--upgrade: unexpected reply from the running proxy")?;
    if let Some(error) = offer.error {
        anyhow::bail!(
            "--upgrade: the running proxy (pid {}) refused: {error}",
            offer.pid
        );
    }
    if received.len() != offer.sockets.len() {
        anyhow::bail!(
            "--upgrade: received {} sockets for {} listeners",
            received.len(),
            offer.sockets.len()
        );
    }
    let mut sockets = Vec::with_capacity(received.len());
    for (name, fd) in offer.sockets.into_iter().zip(received) {
        if !fds::is_listening(&fd) {
            anyhow::bail!("--upgrade: the socket for {name} is not a listening socket");
        }
        sockets.push((name, TcpListener::from(fd)));
    }
    tracing::info!(
        predecessor = offer.pid,
        sockets = sockets.len(),
        "received listening sockets"
    );
    Ok((
        Inherited::from_sockets(sockets),
        Successor {
            stream,
            predecessor: offer.pid,
        },
    ))
}

impl Successor {
    /// Tells the predecessor this process serves on its sockets, and waits until it has
    /// stopped accepting (it then drains and exits on its own).
    ///
    /// # Errors
    /// The predecessor went away without confirming (it may have exited meanwhile; the
    /// sockets are this process's either way).
    pub(crate) async fn ready(mut self) -> anyhow::Result<()> {
        write_json(&mut self.stream, &Ready { ready: true }).await?;
        let line = fds::read_line(&mut self.stream).await?;
        let draining: Draining = serde_json::from_slice(&line)?;
        anyhow::ensure!(
            draining.draining,
            "the running proxy did not start draining"
        );
        tracing::info!(predecessor = self.predecessor, "predecessor draining");
        Ok(())
    }
}

/// The predecessor's end: the bound upgrade socket, served until a successor takes over.
pub(crate) struct UpgradeSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// A successor that serves on this process's sockets; [`Handed::confirm`] lets it go on.
pub(crate) struct Handed {
    stream: UnixStream,
    /// The successor's process id.
    pub(crate) pid: u32,
}

impl UpgradeSocket {
    /// Listens at `path`. A file left there by a proxy that is gone is replaced.
    ///
    /// # Errors
    /// Another process answers at `path` (a second proxy with the same admin port or
    /// `upgrade.socket`), or the path cannot be bound (directory missing, permissions).
    pub(crate) async fn bind(path: &Path) -> io::Result<UpgradeSocket> {
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another process listens at {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        Ok(UpgradeSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// The path it listens at.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Serves successors until one is ready on `sockets` (named listening sockets, in the
    /// order they are offered); returns it, having stopped listening at the path. Failed
    /// attempts are logged and change nothing.
    pub(crate) async fn serve(self, sockets: Vec<(String, OwnedFd)>) -> Handed {
        let sockets = Arc::new(sockets);
        let busy = Arc::new(AtomicBool::new(false));
        let (done_tx, mut done_rx) = mpsc::channel(1);
        let own_uid = rustix::process::getuid().as_raw();
        loop {
            let stream = tokio::select! {
                Some(handed) = done_rx.recv() => return handed,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "upgrade socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            match fds::peer_uid(&stream) {
                Ok(uid) if uid == own_uid || uid == 0 => {}
                other => {
                    tracing::warn!(peer_uid = ?other.ok(), "upgrade socket: a process of another user connected; ignored");
                    continue;
                }
            }
            if busy.swap(true, Ordering::SeqCst) {
                tokio::spawn(refuse(stream));
                continue;
            }
            let (sockets, busy, done_tx) = (sockets.clone(), busy.clone(), done_tx.clone());
            tokio::spawn(async move {
                let mut stream = stream;
                match handoff(&mut stream, &sockets).await {
                    Ok(pid) => {
                        let _ = done_tx.send(Handed { stream, pid }).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "upgrade failed; this process keeps serving");
                        // Free before the peer sees the close, so it may try again at once.
                        busy.store(false, Ordering::SeqCst);
                        drop(stream);
                    }
                }
            });
        }
    }
}

impl Handed {
    /// Tells the successor this process has stopped accepting and drains now.
    pub(crate) async fn confirm(mut self) {
        let _ = write_json(&mut self.stream, &Draining { draining: true }).await;
    }
}

/// One successor: hello, the sockets, and its ready; returns its process id.
async fn handoff(stream: &mut UnixStream, sockets: &[(String, OwnedFd)]) -> anyhow::Result<u32> {
    let line = tokio::time::timeout(HELLO_TIMEOUT, fds::read_line(stream))
        .await
        .context("no hello")??;
    let hello: Hello = serde_json::from_slice(&line).context("not an upgrade hello")?;
    anyhow::ensure!(
        hello.hello == PROTOCOL,
        "successor speaks {:?}, this process {PROTOCOL}",
        hello.hello
    );
    tracing::info!(
        successor = hello.pid,
        "upgrade: handing over listening sockets"
    );
    let offer = Offer {
        pid: std::process::id(),
        sockets: sockets.iter().map(|(name, _)| name.clone()).collect(),
        error: None,
    };
    let mut line = serde_json::to_vec(&offer)?;
    line.push(b'\n');
    let fds: Vec<OwnedFd> = sockets
        .iter()
        .map(|(_, fd)| fd.try_clone())
        .collect::<io::Result<_>>()?;
    fds::send_with_fds(stream, &line, &fds).await?;
    drop(fds);
    let line = tokio::time::timeout(READY_TIMEOUT, fds::read_line(stream))
        .await
        .context("the successor was not ready in time")?
        .context("the successor went away before it was ready")?;
    let ready: Ready = serde_json::from_slice(&line).context("not a ready message")?;
    anyhow::ensure!(ready.ready, "the successor gave up");
    Ok(hello.pid)
}

/// Turns a second successor away while an upgrade is in progress.
async fn refuse(mut stream: UnixStream) {
    let offer = Offer {
        pid: std::process::id(),
        sockets: Vec::new(),
        error: Some("an upgrade is already in progress".into()),
    };
    let _ = tokio::time::timeout(HELLO_TIMEOUT, fds::read_line(&mut stream)).await;
    let _ = write_json(&mut stream, &offer).await;
}

async fn write_json(stream: &mut UnixStream, message: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    stream.write_all(&line).await
}
