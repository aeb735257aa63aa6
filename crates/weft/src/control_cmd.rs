//! `weft control`: the control plane: the dtab store, its HTTP API and its admin server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_config::ControlConfig;
use weft_control::Control;

/// Arguments of `weft control`.
#[derive(Args, Debug)]
pub(crate) struct ControlArgs {
    /// YAML config file (docs/control-plane.md); without it: memory storage, HTTP API on
    /// 127.0.0.1:4180, admin on 127.0.0.1:9991, and no write credential (reads only).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
}

pub(crate) fn run(args: ControlArgs) -> ExitCode {
    let _ = crate::logging::init("info");
    let loaded = match &args.config {
        Some(path) => ControlConfig::load(path),
        None => ControlConfig::parse("", "<embedded default>"),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("config OK: storage {}", storage_kind(&config));
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(serve(config)),
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

fn storage_kind(config: &ControlConfig) -> &'static str {
    match config.storage {
        weft_config::StorageConfig::Memory => "memory",
        weft_config::StorageConfig::Fs { .. } => "fs",
        weft_config::StorageConfig::Etcd(_) => "etcd",
    }
}

async fn serve(config: ControlConfig) -> anyhow::Result<()> {
    let control = Control::start(&config).await?;
    let api = bind(config.http_api, "httpApi").await?;
    let admin = bind(config.admin, "admin").await?;
    let grpc = bind(config.grpc, "grpc").await?;
    let stop = CancellationToken::new();
    let signals = signals(stop.clone())?;
    announce(admin.local_addr()?, api.local_addr()?, grpc.local_addr()?)?;
    tracing::info!(storage = storage_kind(&config), "control plane ready");
    let api_task = tokio::spawn({
        let control = control.clone();
        let stop = stop.clone();
        async move { control.serve_api(api, stop).await }
    });
    let admin_task = tokio::spawn({
        let control = control.clone();
        let stop = stop.clone();
        async move { control.serve_admin(admin, stop).await }
    });
    let grpc_task = tokio::spawn({
        let control = control.clone();
        let stop = stop.clone();
        async move {
            if let Err(error) = control.serve_resolution(grpc, stop).await {
                tracing::error!(%error, "resolution service stopped");
            }
        }
    });
    stop.cancelled().await;
    tracing::info!("stopping");
    let _ = api_task.await;
    let _ = admin_task.await;
    let _ = grpc_task.await;
    drop(signals);
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))
}

/// Stops on the first SIGTERM or SIGINT.
fn signals(stop: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.cancel();
    }))
}

/// Prints one JSON line on stdout once the listeners are bound (configs may use port 0):
/// `{"event":"listening","admin":"ADDR","listeners":{"httpApi":["ADDR"],"grpc":["ADDR"]}}`.
fn announce(admin: SocketAddr, api: SocketAddr, grpc: SocketAddr) -> anyhow::Result<()> {
    let line = serde_json::json!({
        "event": "listening",
        "admin": admin.to_string(),
        "listeners": {"httpApi": [api.to_string()], "grpc": [grpc.to_string()]},
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    tracing::info!(%admin, %api, "listening");
    Ok(())
}
