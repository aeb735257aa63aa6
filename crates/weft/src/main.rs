//! The `weft` binary: the proxy, the demo mesh, and the operator's CLI.

mod admin_client;
mod busy_poll;
mod check_cmd;
mod control_client;
mod control_cmd;
mod dashboards_cmd;
mod demo;
mod dtab_cmd;
mod dtab_control;
mod fleet;
mod golden;
mod identity_cmd;
mod logging;
mod output;
mod proxy_cmd;
mod reload;
mod routes_cmd;
mod slo_cmd;
mod stat_cmd;
mod table;
mod tap_cmd;
mod telemetry_sources;
mod top_cmd;
mod upgrade;
mod version_cmd;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: glibc keeps memory freed after a burst of connections in
/// its per-thread arenas (RSS stayed at the burst's peak in `bench/run`'s memory test), while
/// mimalloc returns freed pages to the OS after a short delay; it is also faster on the
/// small, short-lived allocations of the request path. See docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// weft: a service mesh proxy with dtab routing.
#[derive(Parser, Debug)]
#[command(name = "weft", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy with a YAML config (or the embedded default).
    Proxy(proxy_cmd::ProxyArgs),
    /// Run the control plane: dtabs in named namespaces (etcd, fs or memory), their HTTP
    /// API, and its admin server.
    Control(control_cmd::ControlArgs),
    /// Dtabs: explain how a path binds, and list, get, create, update or delete the dtabs
    /// of a control plane (`weft control`).
    #[command(subcommand)]
    Dtab(dtab_cmd::DtabCommand),
    /// Start a small demo mesh on loopback and watch it carry traffic.
    Demo(demo::DemoArgs),
    /// One service instance of the demo mesh (started by `weft demo`).
    #[command(hide = true)]
    DemoApp(demo::AppArgs),
    /// Manage mesh identities: the built-in CA, certificate requests and renewal.
    #[command(subcommand)]
    Identity(identity_cmd::IdentityCommand),
    /// Watch live requests through a running proxy.
    Tap(tap_cmd::TapArgs),
    /// Golden metrics per router or service: success rate, RPS, latency p50/p95/p99, open
    /// connections, over a window, for one proxy or a fleet.
    Stat(stat_cmd::StatArgs),
    /// Golden metrics per route (a service profile's route names), for one proxy or a fleet.
    Routes(routes_cmd::RoutesArgs),
    /// Live view of the most requested services and routes with their latency.
    ///
    /// weft does not label paths in its metrics (that keeps their cardinality bounded), so top
    /// shows services and the routes of their service profiles rather than paths. On a terminal
    /// the table is redrawn every window; otherwise one table is printed per window.
    Top(top_cmd::TopArgs),
    /// Service-level objectives of a running proxy: attainment, error budget left, burn
    /// rates over 5m/30m/1h/6h and a verdict (ok, burning, exhausted).
    Slo(slo_cmd::SloArgs),
    /// Write Prometheus recording and alerting rules (multi-window, multi-burn-rate alerts
    /// for the config's objectives) and a Grafana dashboard.
    Dashboards(dashboards_cmd::DashboardsArgs),
    /// Run every check (config, dtabs, namers, admin, readiness, versions) and list every
    /// failure with a hint; exit non-zero if any failed.
    Check(check_cmd::CheckArgs),
    /// Print the version of this CLI; with --proxy, the versions the proxies run.
    Version(version_cmd::VersionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy(args) => proxy_cmd::run(args),
        Command::Control(args) => control_cmd::run(args),
        Command::Dtab(cmd) => dtab_cmd::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::DemoApp(args) => demo::run_app(args),
        Command::Tap(args) => tap_cmd::run(args),
        Command::Identity(cmd) => identity_cmd::run(cmd),
        Command::Stat(args) => stat_cmd::run(args),
        Command::Routes(args) => routes_cmd::run(args),
        Command::Top(args) => top_cmd::run(args),
        Command::Slo(args) => slo_cmd::run(args),
        Command::Dashboards(args) => dashboards_cmd::run(args),
        Command::Check(args) => check_cmd::run(args),
        Command::Version(args) => version_cmd::run(args),
    }
}
