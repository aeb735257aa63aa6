//! The `weft` binary: the proxy, the demo mesh, and the operator's CLI.

mod admin_client;
mod demo;
mod dtab_cmd;
mod logging;
mod proxy_cmd;

use std::process::ExitCode;

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
    /// Inspect routing: explain how a path binds.
    #[command(subcommand)]
    Dtab(dtab_cmd::DtabCommand),
    /// Start a small demo mesh on loopback and watch it carry traffic.
    Demo(demo::DemoArgs),
    /// One service instance of the demo mesh (started by `weft demo`).
    #[command(hide = true)]
    DemoApp(demo::AppArgs),
    /// Print the version of this CLI.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy(args) => proxy_cmd::run(args),
        Command::Dtab(cmd) => dtab_cmd::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::DemoApp(args) => demo::run_app(args),
        Command::Version => {
            println!("weft {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
