//! `weft demo`: a small real mesh on loopback (placeholder until the demo lands).

use std::process::ExitCode;

use clap::Args;

/// Arguments of `weft demo`.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {}

/// Arguments of one demo service instance.
#[derive(Args, Debug)]
pub(crate) struct AppArgs {}

pub(crate) fn run(_: DemoArgs) -> ExitCode {
    eprintln!("weft demo: not built yet");
    ExitCode::FAILURE
}

pub(crate) fn run_app(_: AppArgs) -> ExitCode {
    ExitCode::FAILURE
}
