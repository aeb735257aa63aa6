//! The demo's child processes: start each with its log in a file, wait for its `listening`
//! line, and stop them all (SIGTERM, then SIGKILL after a grace period).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How many log lines an error shows.
const LOG_TAIL: usize = 15;

/// One running child.
struct Proc {
    /// `rates-3 sidecar`, `web app` ...
    label: String,
    child: Child,
    log: PathBuf,
    /// Held open so an app sees EOF (and exits) if the demo dies without stopping it.
    _stdin: Option<ChildStdin>,
}

/// Every child the demo started. Dropping it kills the ones still running (kill_on_drop), so
/// a demo that fails halfway leaves no orphans; [`Procs::stop`] is the graceful path.
#[derive(Default)]
pub(crate) struct Procs {
    procs: Vec<Proc>,
}

/// A started child's stdout, to read its `listening` line from.
pub(crate) struct Started {
    pub(crate) label: String,
    stdout: ChildStdout,
}

impl Procs {
    /// Starts `exe args...` with stderr appended to `log`.
    pub(crate) fn spawn(
        &mut self,
        label: &str,
        exe: &Path,
        args: &[OsString],
        log: &Path,
    ) -> anyhow::Result<Started> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("{label}: cannot create log file {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Logs go to a file: no colour codes.
            .env("NO_COLOR", "1")
            // Its own process group: Ctrl-C reaches only the demo, which then stops the load
            // and the children in order instead of everyone dying at once.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("{label}: cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout is piped")?;
        self.procs.push(Proc {
            label: label.to_owned(),
            _stdin: child.stdin.take(),
            child,
            log: log.to_owned(),
        });
        Ok(Started {
            label: label.to_owned(),
            stdout,
        })
    }

    /// Why `label` failed: its exit status if it exited, and the tail of its log.
    pub(crate) async fn explain(&mut self, label: &str) -> String {
        let Some(p) = self.procs.iter_mut().find(|p| p.label == label) else {
            return String::new();
        };
        // A child that just closed stdout is usually exiting: give it a moment to be reaped.
        let exited = tokio::time::timeout(Duration::from_millis(500), p.child.wait()).await;
        let mut out = match exited {
            Ok(Ok(status)) => format!("{label} exited ({status})"),
            _ => format!("{label} is still running"),
        };
        let _ = write!(out, "; last lines of {}:", p.log.display());
        out.push_str(&tail(&p.log));
        out
    }

    /// The first child that exited by itself, with [`Procs::explain`]'s story.
    pub(crate) async fn exited(&mut self) -> Option<String> {
        let label = self
            .procs
            .iter_mut()
            .find_map(|p| matches!(p.child.try_wait(), Ok(Some(_))).then_some(p))?
            .label
            .clone();
        Some(self.explain(&label).await)
    }

    /// SIGTERM to every child, then up to `grace` for all to exit, then SIGKILL. Returns the
    /// labels of children that had to be killed.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Vec<String> {
        for p in &mut self.procs {
            if let (Ok(None), Some(pid)) = (p.child.try_wait(), p.child.id()) {
                terminate(pid).await;
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut killed = Vec::new();
        for p in &mut self.procs {
            // All got SIGTERM together, so waiting in turn against one deadline is parallel.
            if tokio::time::timeout_at(deadline, p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.kill().await;
                killed.push(p.label.clone());
            }
        }
        self.procs.clear();
        killed
    }
}

impl Started {
    /// Reads stdout until the child's `{"event":"listening",...}` line and returns it; the
    /// rest of stdout is drained in the background so the child never blocks on a full pipe.
    pub(crate) async fn listening(self, timeout: Duration) -> anyhow::Result<Value> {
        let mut lines = BufReader::new(self.stdout).lines();
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "listening" {
                        return Ok(v);
                    }
                }
            }
            bail!("stdout closed before the listening line")
        })
        .await
        .map_err(|_| anyhow!("no listening line within {timeout:?}"))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(found)
    }
}

/// Sends SIGTERM through `kill(1)`: the workspace has no libc/nix, and this runs once per
/// child at shutdown.
async fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// The last [`LOG_TAIL`] lines of a log file, each on its own indented line.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return " (empty)".to_owned();
    }
    let start = lines.len().saturating_sub(LOG_TAIL);
    lines[start..].iter().fold(String::new(), |mut out, l| {
        let _ = write!(out, "\n    {l}");
        out
    })
}
