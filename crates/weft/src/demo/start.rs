//! Bringing the mesh up: check the addresses are free, write discovery and configs into a
//! private directory, start every app and sidecar, and wait until each is listening and
//! every sidecar is ready.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http::StatusCode;

use super::http::{self as client, Client};
use super::layout::{Instance, Layout};
use super::procs::{Procs, Started};

/// How long a child may take to print its `listening` line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a sidecar may take to answer `/ready` with 200 after listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// `$TMPDIR/weft-demo-<pid>/` with `disco/`, `configs/` and `logs/`.
pub(crate) struct WorkDir {
    pub(crate) root: PathBuf,
}

impl WorkDir {
    /// Creates the directory afresh (a stale one from a reused pid is replaced).
    pub(crate) fn create() -> anyhow::Result<WorkDir> {
        let root = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("cannot remove stale {}", root.display()))?;
        }
        for sub in ["disco", "configs", "logs"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(WorkDir { root })
    }

    pub(crate) fn disco(&self) -> PathBuf {
        self.root.join("disco")
    }

    pub(crate) fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Removes the directory (best effort: it is only scratch space).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Fails with the address and a hint when any instance address cannot be bound: in use
/// (another demo?) or not routed to loopback (not Linux).
pub(crate) fn preflight(layout: &Layout) -> anyhow::Result<()> {
    for inst in &layout.instances {
        for addr in inst.addresses() {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AddrInUse => bail!(
                    "{addr} ({}) is already in use: is another weft demo running? \
                     Pick other IPs with --ip-base",
                    inst.name
                ),
                Err(e) if e.kind() == ErrorKind::AddrNotAvailable => bail!(
                    "cannot bind {addr} ({}): {e}. The demo gives each instance its own \
                     127.x.y.z address; Linux routes all of 127.0.0.0/8 to loopback, other \
                     systems need an alias (macOS: sudo ifconfig lo0 alias {})",
                    inst.name,
                    inst.ip
                ),
                Err(e) => bail!("cannot bind {addr} ({}): {e}", inst.name),
            }
        }
    }
    Ok(())
}

/// Writes discovery files and sidecar configs, starts every app and sidecar, and waits
/// until all listen and all sidecars are ready.
pub(crate) async fn start(
    layout: &Layout,
    exe: &Path,
    dir: &WorkDir,
    procs: &mut Procs,
    client: &Client,
    dns: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    for (service, contents) in layout.disco_files() {
        let path = dir.disco().join(service);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut started = Vec::new();
    for inst in &layout.instances {
        let config = dir.root.join("configs").join(format!("{}.yaml", inst.name));
        let yaml = inst
            .sidecar_config(&dir.disco(), dns)
            .map_err(|e| anyhow!(e))?;
        std::fs::write(&config, yaml)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = |role: &str| dir.logs().join(format!("{}.{role}.log", inst.name));
        let app = app_args(inst);
        started.push(procs.spawn(&format!("{} app", inst.name), exe, &app, &log("app"))?);
        let proxy: Vec<OsString> = vec!["proxy".into(), "-c".into(), config.into()];
        let label = format!("{} sidecar", inst.name);
        started.push(procs.spawn(&label, exe, &proxy, &log("sidecar"))?);
    }
    // Wait for all in parallel; report the first failure with that child's story.
    let waits: Vec<_> = started.into_iter().map(wait_listening).collect();
    for wait in waits {
        if let Ok(Err((label, e))) = wait.await {
            let story = procs.explain(&label).await;
            bail!("{label} did not start: {e:#}\n{story}");
        }
    }
    for inst in &layout.instances {
        if let Err(e) = wait_ready(client, inst).await {
            let label = format!("{} sidecar", inst.name);
            let story = procs.explain(&label).await;
            bail!("{label} did not become ready: {e:#}\n{story}");
        }
    }
    Ok(())
}

fn app_args(inst: &Instance) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "demo-app".into(),
        "--service".into(),
        inst.service.name().into(),
        "--name".into(),
        inst.name.clone().into(),
        "--listen".into(),
        inst.app().to_string().into(),
        "--delay-ms".into(),
        inst.delay_ms.to_string().into(),
        "--jitter-ms".into(),
        inst.jitter_ms.to_string().into(),
        "--exit-on-stdin-eof".into(),
    ];
    if inst.service.downstream().is_some() {
        args.push("--outbound".into());
        args.push(inst.outbound().to_string().into());
    }
    args
}

type Waiting = tokio::task::JoinHandle<Result<(), (String, anyhow::Error)>>;

fn wait_listening(s: Started) -> Waiting {
    tokio::spawn(async move {
        let label = s.label.clone();
        s.listening(LISTEN_TIMEOUT)
            .await
            .map(drop)
            .map_err(|e| (label, e))
    })
}

/// Polls `GET /ready` until 200 (readiness, not a fixed sleep).
async fn wait_ready(client: &Client, inst: &Instance) -> anyhow::Result<()> {
    let admin = inst.admin();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let host = admin.to_string();
    loop {
        let last = match client::get(client, admin, &host, "/ready", Duration::from_secs(1)).await {
            Ok(r) if r.status == StatusCode::OK => return Ok(()),
            Ok(r) => format!("GET http://{admin}/ready: {} {}", r.status, r.text()),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("not ready within {READY_TIMEOUT:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
