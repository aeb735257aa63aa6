//! A launcher for the built `weft` binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Client;

/// How long weft may take to print its `listening` line.
const LISTENING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `/ready` may take to answer 200 after `listening`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `weft proxy -c <file>` process.
///
/// [`Weft::start`] writes the config to a tempdir, launches the binary with stdout and
/// stderr piped, waits (up to 20 s) for the one JSON line
/// `{"event":"listening","admin":"ADDR","routers":{"LABEL":["ADDR",...]}}` on stdout, then
/// polls `GET /ready` on the admin address until it answers 200. Stderr is captured for
/// assertions and failure messages. The process is killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Weft {
    child: Child,
    admin: SocketAddr,
    routers: BTreeMap<String, Vec<SocketAddr>>,
    output: Output,
    config_path: PathBuf,
    _dir: Option<TempDir>,
}

/// A signal to send to weft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGINT: graceful shutdown (Ctrl-C).
    Int,
    /// SIGKILL.
    Kill,
    /// SIGHUP: reload the config file.
    Hup,
}

/// The outcome of a weft run that ended on its own (see [`Weft::run_to_exit`]).
#[derive(Debug)]
pub struct Exited {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything weft wrote to stdout.
    pub stdout: String,
    /// Everything weft wrote to stderr.
    pub stderr: String,
    /// The config file weft was given.
    pub config_path: PathBuf,
}

/// Captured stdout/stderr and the tasks filling them.
#[derive(Debug)]
struct Output {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

// === impl Weft ===

impl Weft {
    /// Starts `bin proxy -c <tempdir>/weft.yaml` with `config` as the file's content and
    /// waits until it is listening and ready. Panics, with weft's stderr, if it is not.
    pub async fn start(bin: impl AsRef<Path>, config: &str) -> Weft {
        match Weft::try_start(bin, config).await {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Weft::start`], with extra `weft proxy` flags (e.g. `["--threads", "2"]`).
    pub async fn start_with_args(bin: impl AsRef<Path>, flags: &[&str], config: &str) -> Weft {
        match Weft::try_start_with_args(bin, flags, config).await {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Weft::start`], but returns a description (including stderr) on failure.
    pub async fn try_start(bin: impl AsRef<Path>, config: &str) -> Result<Weft, String> {
        Weft::try_start_with_args(bin, &[], config).await
    }

    /// Like [`Weft::start_with_args`], but returns a description (including stderr) on
    /// failure.
    pub async fn try_start_with_args(
        bin: impl AsRef<Path>,
        flags: &[&str],
        config: &str,
    ) -> Result<Weft, String> {
        Weft::launch(bin.as_ref(), &proxy_args(flags), config).await
    }

    /// Starts `bin control -c <tempdir>/weft.yaml` (the control plane) and waits until it is
    /// listening and its `/ready` answers 200. [`Weft::admin`] is its admin server and
    /// [`Weft::router`]`("httpApi")` its HTTP API. Panics, with stderr, if it does not start.
    pub async fn start_control(bin: impl AsRef<Path>, config: &str) -> Weft {
        match Weft::try_start_control(bin, config).await {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Weft::start_control`], but returns a description (including stderr) on
    /// failure.
    pub async fn try_start_control(bin: impl AsRef<Path>, config: &str) -> Result<Weft, String> {
        Weft::launch(bin.as_ref(), &["control", "-c"], config).await
    }

    /// Starts `bin proxy <flags> -c <config_path>` with a config file that already exists
    /// (relative paths in it are taken from its directory, e.g. a directory of
    /// `examples/`), and waits until it is listening and ready.
    ///
    /// # Errors
    /// A description including weft's stderr when it does not start.
    pub async fn try_start_file(
        bin: impl AsRef<Path>,
        flags: &[&str],
        config_path: &Path,
    ) -> Result<Weft, String> {
        Weft::launch_at(
            bin.as_ref(),
            &proxy_args(flags),
            config_path.to_path_buf(),
            None,
        )
        .await
    }

    /// Runs `bin <args> <config file>`, waits for the `listening` line and for `/ready`.
    async fn launch(bin: &Path, args: &[&str], config: &str) -> Result<Weft, String> {
        let (dir, config_path) = write_config(config);
        Weft::launch_at(bin, args, config_path, Some(dir)).await
    }

    /// [`Weft::launch`] with the config file at `config_path`, kept in `dir` if given.
    async fn launch_at(
        bin: &Path,
        args: &[&str],
        config_path: PathBuf,
        dir: Option<TempDir>,
    ) -> Result<Weft, String> {
        let mut child = spawn(bin, args, &config_path)?;
        let (listening_tx, listening_rx) = oneshot::channel();
        let output = Output::capture(&mut child, Some(listening_tx));

        let line = match tokio::time::timeout(LISTENING_TIMEOUT, listening_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                output.finish(Duration::from_secs(2)).await;
                return Err(format!(
                    "weft closed stdout without a `listening` line (exit: {status:?})\n{}",
                    output.describe()
                ));
            }
            Err(_) => {
                let _ = child.start_kill();
                output.finish(Duration::from_secs(2)).await;
                return Err(format!(
                    "weft printed no `listening` line within {LISTENING_TIMEOUT:?}\n{}",
                    output.describe()
                ));
            }
        };
        let (admin, routers) = parse_listening(&line)
            .map_err(|e| format!("bad `listening` line {line:?}: {e}\n{}", output.describe()))?;
        let weft = Weft {
            child,
            admin,
            routers,
            output,
            config_path,
            _dir: dir,
        };
        weft.wait_ready().await?;
        Ok(weft)
    }

    /// Runs `bin <args> <config file>` (e.g. `["proxy", "-c"]`) with `config` as the file
    /// and waits for it to exit on its own, up to `timeout`. For configs weft must reject.
    pub async fn run_to_exit(
        bin: impl AsRef<Path>,
        args: &[&str],
        config: &str,
        timeout: Duration,
    ) -> Exited {
        let (_dir, config_path) = write_config(config);
        let mut child = spawn(bin.as_ref(), args, &config_path).expect("spawn weft");
        let output = Output::capture(&mut child, None);
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(s) => s.expect("wait for weft"),
            Err(_) => {
                let _ = child.start_kill();
                output.finish(Duration::from_secs(2)).await;
                panic!(
                    "weft did not exit within {timeout:?}\n{}",
                    output.describe()
                );
            }
        };
        output.finish(Duration::from_secs(5)).await;
        Exited {
            status,
            stdout: output.stdout(),
            stderr: output.stderr(),
            config_path,
        }
    }

    /// The admin server's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The first listening address of the router `label`; panics if there is none.
    pub fn router(&self, label: &str) -> SocketAddr {
        match self.routers.get(label).and_then(|a| a.first()) {
            Some(a) => *a,
            None => panic!("no router {label:?} in {:?}", self.routers),
        }
    }

    /// Every router's listening addresses, by label.
    pub fn routers(&self) -> &BTreeMap<String, Vec<SocketAddr>> {
        &self.routers
    }

    /// The config file weft was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// weft's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("weft has not been reaped")
    }

    /// Everything weft has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// Everything weft has written to stdout so far.
    pub fn stdout(&self) -> String {
        self.output.stdout()
    }

    /// A client for the router `label` (HTTP/1.1).
    pub fn http1(&self, label: &str) -> Client {
        Client::http1(self.router(label))
    }

    /// A client for the router `label` (HTTP/2 prior knowledge).
    pub fn http2(&self, label: &str) -> Client {
        Client::http2(self.router(label))
    }

    /// A client for the admin server.
    pub fn admin_client(&self) -> Client {
        Client::http1(self.admin)
    }

    /// Sets weft's log filter through the admin server (`PUT /logging?level=`), e.g.
    /// `info,weft_proxy=debug` to see per-connection events. Panics if weft refuses it.
    pub async fn set_log_level(&self, level: &str) {
        let path = format!("/logging?level={}", level.replace(',', "%2C"));
        let req = Client::request(&self.admin.to_string(), &path)
            .method("PUT")
            .body(crate::TestBody::empty())
            .expect("a valid request");
        let r = self
            .admin_client()
            .send(req)
            .await
            .expect("the admin server answers");
        assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    }

    /// The status of `GET /ready` on a fresh connection, or `None` if it could not be had.
    pub async fn ready_status(&self) -> Option<u16> {
        let r = Client::http1(self.admin)
            .get(&self.admin.to_string(), "/ready")
            .await
            .ok()?;
        Some(r.status.as_u16())
    }

    /// Polls `/ready` until it answers 200 (20 s at most).
    pub async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.ready_status().await;
            if last == Some(200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "admin {}/ready did not answer 200 within {READY_TIMEOUT:?} (last: {last:?})\n{}",
            self.admin,
            self.output.describe()
        ))
    }

    /// Sends a signal to weft (with the `kill` command: no unsafe code here).
    pub fn signal(&self, sig: Signal) {
        let name = match sig {
            Signal::Term => "-TERM",
            Signal::Int => "-INT",
            Signal::Kill => "-KILL",
            Signal::Hup => "-HUP",
        };
        let status = std::process::Command::new("kill")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {name} {} failed", self.pid());
    }

    /// Waits for weft to exit, up to `timeout`; panics with its stderr if it does not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(s) => {
                self.output.finish(Duration::from_secs(2)).await;
                s.expect("wait for weft")
            }
            Err(_) => panic!(
                "weft did not exit within {timeout:?}\n{}",
                self.output.describe()
            ),
        }
    }

    /// Whether the process is still running (not reaped).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `proxy <flags> -c`: the arguments before the config file.
fn proxy_args<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    ["proxy"]
        .into_iter()
        .chain(flags.iter().copied())
        .chain(["-c"])
        .collect()
}

fn write_config(config: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create config tempdir");
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, config).expect("write weft.yaml");
    (dir, path)
}

fn spawn(bin: &Path, args: &[&str], config: &Path) -> Result<Child, String> {
    Command::new(bin)
        .args(args)
        .arg(config)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot spawn {}: {e}", bin.display()))
}

/// Parses the `listening` event into the admin address and router addresses.
fn parse_listening(line: &str) -> Result<(SocketAddr, BTreeMap<String, Vec<SocketAddr>>), String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let admin = v["admin"]
        .as_str()
        .ok_or("no `admin` string")?
        .parse()
        .map_err(|e| format!("admin: {e}"))?;
    let mut routers = BTreeMap::new();
    // The proxy names its routers' listeners, the control plane its own (`listeners`).
    let listeners = v["routers"].as_object().or(v["listeners"].as_object());
    for (label, addrs) in listeners.ok_or("no `routers` or `listeners` object")? {
        let addrs = addrs
            .as_array()
            .ok_or("router addresses are not an array")?
            .iter()
            .map(|a| {
                a.as_str()
                    .ok_or("address not a string".to_owned())?
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("router {label}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        routers.insert(label.clone(), addrs);
    }
    Ok((admin, routers))
}

// === impl Output ===

impl Output {
    /// Starts tasks that copy the child's stdout and stderr; the first stdout line that is a
    /// JSON object with `"event":"listening"` is also sent on `listening`.
    fn capture(child: &mut Child, listening: Option<oneshot::Sender<String>>) -> Output {
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(copy_lines(out, stdout.clone(), listening)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(copy_lines(err, stderr.clone(), None)));
        }
        Output {
            stdout,
            stderr,
            readers,
        }
    }

    /// Waits (bounded) for the readers to reach EOF, so the captured text is complete.
    async fn finish(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for r in &self.readers {
            while !r.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    fn describe(&self) -> String {
        format!(
            "--- weft stdout ---\n{}\n--- weft stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }
}

async fn copy_lines(
    from: impl AsyncRead + Unpin,
    into: Arc<Mutex<String>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        {
            let mut s = into.lock().expect("output lock");
            s.push_str(&line);
            s.push('\n');
        }
        if listening.is_some() && is_listening(&line) {
            if let Some(tx) = listening.take() {
                let _ = tx.send(line);
            }
        }
    }
}

fn is_listening(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .map(|v| v["event"] == "listening")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let (admin, routers) = parse_listening(
            r#"{"event":"listening","admin":"127.0.0.1:9990","routers":{"outbound":["127.0.0.1:4140"],"in":[]}}"#,
        )
        .expect("parses");
        assert_eq!(admin.port(), 9990);
        assert_eq!(routers["outbound"][0].port(), 4140);
        assert!(routers["in"].is_empty());
    }

    #[tokio::test]
    async fn a_binary_that_exits_at_once_fails_with_its_stderr() {
        let e = Weft::try_start("/bin/sh", "ignored")
            .await
            .expect_err("sh is not weft");
        assert!(e.contains("without a `listening` line"), "{e}");
    }
}
