//! `weft demo`: a small real mesh on loopback. Separate processes of this binary: a currency
//! app (`web` -> `converter` -> `rates` x3, one replica slow), each instance with its own
//! `weft proxy` sidecar, discovery through an `fs` directory (or, with `--discovery dns`,
//! DNS SRV records served by the demo itself, one replica joining live), a steady load, and a
//! live table read from the sidecars' `/metrics`. See `docs/demo.md`.
//!
//! Files: `run` orchestrates, `start` brings the mesh up, `procs` supervises children,
//! `layout` plans IPs/ports/configs, `app` is the service, `load` the load generator,
//! `stats`/`table` turn scrapes into the table (with the shared `crate::prom` and
//! `crate::table`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

mod app;
mod dns;
mod http;
mod layout;
mod load;
mod procs;
mod run;
mod start;
mod stats;
mod table;

pub(crate) use app::{run_app, AppArgs};
use layout::IpBase;

/// Arguments of `weft demo`.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Requests per second the load generator sends to web.
    #[arg(long, default_value_t = 20.0, value_parser = parse_rps)]
    rps: f64,
    /// How often the table refreshes (each table covers the time since the previous one).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    interval: Duration,
    /// Run this long, print a summary and stop (default: until Ctrl-C). Exits 0 when the mesh
    /// carried the load with at least 95% success.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// First three octets of the instances' loopback IPs: web gets .1, converter .2,
    /// rates-1..3 .3 to .5.
    #[arg(long, default_value = "127.0.10")]
    ip_base: IpBase,
    /// Response delay of the slow rates replica (rates-3), in milliseconds.
    #[arg(long, default_value_t = 60)]
    slow_ms: u64,
    /// Most requests the load generator keeps in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// How the sidecars find each other: `fs` (a watched directory) or `dns` (SRV records
    /// from a DNS server the demo runs on `<ip-base>.53:5353`, through the `dnssrv` namer).
    #[arg(long, value_enum, default_value_t = Discovery::Fs)]
    discovery: Discovery,
    /// With `--discovery dns`: rates-3 is not in DNS at first, and its SRV record is added
    /// this long after the load starts, so the table shows it joining live.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    join_after: Duration,
}

/// How the demo's sidecars discover each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Discovery {
    /// A directory of files (the `fs` namer).
    Fs,
    /// DNS SRV records (the `dnssrv` namer), served by the demo.
    Dns,
}

/// Runs the demo; exit code 0 when it ran and (with `--duration`) the mesh carried the load.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    run::run(args)
}

fn parse_rps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.1..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s}: expected requests per second from 0.1 to 10000"
        )),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => Ok(d),
        Ok(_) => Err(format!("{s}: expected 100ms to 1h")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}
