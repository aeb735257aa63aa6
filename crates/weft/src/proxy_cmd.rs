//! `weft proxy`: load and validate the config, bind every listener, serve until a signal or
//! `POST /shutdown`, then drain.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_admin::AdminState;
use weft_config::Config;
use weft_proxy::Proxy;
use weft_telemetry::Metrics;

use crate::busy_poll::BusyPoll;
use crate::{telemetry_sources, upgrade};

/// Arguments of `weft proxy`.
#[derive(Args, Debug)]
pub(crate) struct ProxyArgs {
    /// YAML config file; without it the embedded default applies (outbound 127.0.0.1:4140,
    /// inbound 0.0.0.0:4143 to 127.0.0.1:8080, admin 127.0.0.1:9990).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config, print a summary, and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
    /// Runtime worker threads (default: 1; a sidecar proxy rarely needs more).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// After each wake-up, keep polling for I/O for this many microseconds instead of
    /// sleeping (default 0: off; only with `--threads 1`). Cuts latency on virtual machines
    /// at the cost of CPU; see docs/benchmarks.md ("Busy polling").
    #[arg(long, default_value_t = 0, value_name = "MICROSECONDS",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    busy_poll: u32,
    /// Replace the proxy running with this config without refusing or cutting a connection:
    /// take its listening sockets over its upgrade socket (`upgrade.socket`), serve on them,
    /// then let it drain and exit. If this process cannot start, the running one keeps
    /// serving and this command exits non-zero. See docs/upgrades.md.
    #[arg(long)]
    upgrade: bool,
    /// Do not watch the config file for changes: reload it only on SIGHUP.
    #[arg(long)]
    no_watch_config: bool,
}

pub(crate) fn run(args: ProxyArgs) -> ExitCode {
    let (log_level, log_control) = crate::logging::init("info");
    let loaded = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    if args.busy_poll > 0 && args.threads > 1 {
        // A multi-thread runtime wakes idle workers to share a yielding task's work, and
        // each wake-up would restart the window: the spinner would never stop.
        eprintln!("weft: --busy-poll works with --threads 1 only");
        return ExitCode::from(2);
    }
    if args.check_config {
        let routers: Vec<&str> = config.routers.iter().map(|r| r.label.as_str()).collect();
        println!("config OK: routers {}", routers.join(", "));
        return ExitCode::SUCCESS;
    }
    // Sockets from systemd socket activation, taken before any other thread starts (it clears
    // LISTEN_FDS and LISTEN_PID from the environment).
    let inherited = match weft_proxy::Inherited::from_env() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("weft: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread: a current-thread runtime, with no work-stealing or cross-thread wake-ups on
    // the request path (the profile in docs/benchmarks.md showed them).
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(args.threads));
        b
    };
    let busy_poll = BusyPoll::install(&mut builder, args.busy_poll);
    let result = match builder.enable_all().build() {
        Ok(rt) => rt.block_on(async {
            if let Some(spinner) = busy_poll {
                tokio::spawn(spinner.run());
            }
            let reload = args.config.map(|path| (path, !args.no_watch_config));
            serve(
                config,
                reload,
                inherited,
                args.upgrade,
                log_level,
                log_control,
            )
            .await
        }),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `config`; `reload` is the config file to reload (on SIGHUP, and on changes when
/// its flag is true).
async fn serve(
    config: Config,
    reload: Option<(PathBuf, bool)>,
    mut inherited: weft_proxy::Inherited,
    upgrade: bool,
    log_level: String,
    log_control: crate::logging::LogControl,
) -> anyhow::Result<()> {
    let successor = if upgrade {
        let path = config.upgrade.socket.as_deref().context(
            "--upgrade: no upgrade socket to find the running proxy by (the admin port is 0): \
             set `upgrade.socket`",
        )?;
        let (handed, successor) = upgrade::take_over(path).await?;
        inherited = handed;
        Some(successor)
    } else {
        None
    };
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let metrics_for_identity = metrics.clone();
    metrics
        .history()
        .set_objectives(telemetry_sources::objectives(&config));
    metrics.history().spawn();
    let proxy = Proxy::bind_inherited(&config, &metrics, &mut inherited).await?;
    let admin = match inherited.take("admin", config.admin.addr) {
        Some(socket) => weft_proxy::Inherited::into_tokio(socket)
            .context("admin: the inherited socket cannot be used")?,
        None => TcpListener::bind(config.admin.addr)
            .await
            .with_context(|| format!("admin: cannot listen on {}", config.admin.addr))?,
    };
    let unclaimed = inherited.unclaimed();
    if !unclaimed.is_empty() && successor.is_some() {
        // The new config no longer listens there; the predecessor serves them until it exits.
        tracing::warn!(sockets = %unclaimed.join(", "), "handed-over sockets this config does not use are closed");
    } else if !unclaimed.is_empty() {
        anyhow::bail!(
            "sockets passed by systemd that no router and not the admin server claims: {} \
             (name each socket after its router's label with FileDescriptorName=, or give the \
             router that address)",
            unclaimed.join(", ")
        );
    }
    let shutdown = CancellationToken::new();
    let config_json = serde_json::to_value(&config).unwrap_or(serde_json::Value::Null);
    let state = Arc::new(
        AdminState::new(metrics, proxy.routers(), config_json, shutdown.clone())
            .with_tap(proxy.tap())
            .with_log_control(&log_level, log_control)
            .with_namers(proxy.namer_statuses()),
    );
    metrics_for_identity.set_namer_source(telemetry_sources::namer_source(proxy.namer_statuses()));
    metrics_for_identity.config_loaded();
    // Signal handlers go in before anyone learns we are up: a SIGTERM sent right after the
    // `listening` line or the first 200 from /ready must drain, not kill (and SIGHUP must
    // reload, not kill).
    let mut signals = Signals::install();
    let hup = signals.hup.take();
    match reload {
        Some((path, watch)) => {
            let reload = crate::reload::Reload::new(
                path,
                proxy.reloader(),
                state.clone(),
                metrics_for_identity.clone(),
                watch,
            );
            tokio::spawn(reload.run(hup));
        }
        None => {
            tokio::spawn(ignore_hup(hup));
        }
    }
    if let Some(statsd) = &config.statsd {
        weft_telemetry::statsd::spawn(metrics_for_identity.clone(), statsd);
    }
    if let Some(identity) = proxy.identity() {
        tokio::spawn(report_identity(identity, metrics_for_identity.clone()));
    }
    announce(&proxy, admin.local_addr()?)?;
    // Duplicates of every listening socket, for a successor (`--upgrade`) to take over.
    let mut handoff = proxy.listener_sockets()?;
    handoff.push(("admin".into(), admin.as_fd().try_clone_to_owned()?));
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(weft_admin::serve(admin, state.clone(), admin_stop.clone()));
    tokio::spawn(signals.watch(shutdown.clone()));
    let grace = config.admin.shutdown_grace;
    // Fired when the listeners stop accepting: after the drain's announce window, or at once
    // when a successor took them over.
    let close = CancellationToken::new();
    let accepts = proxy.accept_mark();
    let serving = tokio::spawn(proxy.serve(shutdown.clone(), close.clone(), grace));
    state.set_ready(true);
    tracing::info!("ready");
    if let Some(successor) = successor {
        // We serve on the sockets; the predecessor stops accepting once told.
        match successor.ready().await {
            // The first connection accepted from now on is logged, for the accept gap of an
            // upgrade (bench/upgrade).
            Ok(()) => accepts.arm(),
            Err(e) => tracing::warn!(error = %e, "upgrade: the predecessor did not confirm"),
        }
    }
    if let Some(handed) = wait_for_successor(&config, handoff, &shutdown).await {
        // A successor serves on our sockets: stop accepting now (admin included, so health
        // checks reach the new process), then drain what is in flight.
        tracing::info!(successor = handed.pid, "upgrade: handed over; draining");
        shutdown.cancel();
        close.cancel();
        admin_stop.cancel();
        handed.confirm().await;
        state.set_ready(false);
        tracing::info!(grace = ?grace, "draining");
    } else {
        // A signal or `POST /shutdown`: announce the drain (`/ready` 503, `Connection:
        // close`, GOAWAY) while still accepting, so peers and load balancers take this
        // proxy out before its listeners close (`admin.drainAnnounce`).
        state.set_ready(false);
        let announce = config.admin.drain_announce;
        tracing::info!(grace = ?grace, announce = ?announce, "draining");
        tokio::time::sleep(announce).await;
        close.cancel();
    }
    let clean = serving.await.unwrap_or(false);
    if !clean {
        tracing::warn!("shutdown grace expired with requests still in flight");
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves the upgrade socket until a successor takes over (returned) or `shutdown` fires
/// (`None`; the socket's path is removed).
async fn wait_for_successor(
    config: &Config,
    handoff: Vec<(String, std::os::fd::OwnedFd)>,
    shutdown: &CancellationToken,
) -> Option<upgrade::Handed> {
    let socket = match &config.upgrade.socket {
        Some(path) => match upgrade::UpgradeSocket::bind(path).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "upgrade socket unavailable: `weft proxy --upgrade` cannot replace this process");
                shutdown.cancelled().await;
                return None;
            }
        },
        None => {
            shutdown.cancelled().await;
            return None;
        }
    };
    let path = socket.path().to_owned();
    tokio::select! {
        handed = socket.serve(handoff) => Some(handed),
        () = shutdown.cancelled() => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Prints one JSON line on stdout once every listener is bound, so supervisors and tests
/// learn the actual addresses (configs may use port 0).
fn announce(proxy: &Proxy, admin: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut routers = serde_json::Map::new();
    for (label, addr) in proxy.listening() {
        let entry = routers
            .entry(label)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = entry {
            list.push(addr.to_string().into());
        }
    }
    let line =
        serde_json::json!({"event": "listening", "admin": admin.to_string(), "routers": routers});
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    tracing::info!(%admin, listeners = %line["routers"], "listening");
    Ok(())
}

/// Without a config file there is nothing to reload: SIGHUP is logged and ignored.
async fn ignore_hup(hup: Option<tokio::signal::unix::Signal>) {
    let Some(mut hup) = hup else { return };
    while hup.recv().await.is_some() {
        tracing::warn!("SIGHUP: no config file (-c) to reload; the embedded default stays");
    }
}

/// Keeps the identity gauges (certificate expiry, reloads) current.
async fn report_identity(identity: weft_tls::Identity, metrics: Metrics) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        metrics.set_identity(
            identity.not_after_unix(),
            identity.reloads(),
            identity.rejected_reloads(),
        );
    }
}

/// SIGTERM, SIGINT and SIGHUP handlers, installed synchronously at start-up.
struct Signals {
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    /// SIGHUP: reload the config (taken by the reload task).
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => {
                tracing::warn!("cannot install signal handlers; use POST /shutdown to stop");
                None
            }
        };
        let hup = signal(SignalKind::hangup())
            .inspect_err(|_| {
                tracing::warn!("cannot install a SIGHUP handler; SIGHUP will not reload")
            })
            .ok();
        Signals { streams, hup }
    }

    /// The first SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.
    async fn watch(self, shutdown: CancellationToken) {
        let Some((mut term, mut int)) = self.streams else {
            return;
        };
        let mut first = true;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if first {
                tracing::info!("signal received: draining (send again to exit at once)");
                shutdown.cancel();
                first = false;
            } else {
                tracing::warn!("second signal: exiting without draining");
                std::process::exit(1);
            }
        }
    }
}
