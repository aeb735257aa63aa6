//! `weft dashboards`: writes what a Prometheus and Grafana user needs for the configured
//! objectives: recording and alerting rules for the multi-window, multi-burn-rate alerts of
//! the Google SRE workbook ("Alerting on SLOs"), and a Grafana dashboard.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use weft_config::{Config, Objective};

use crate::output;

mod grafana;
mod rules;

/// Arguments of `weft dashboards`.
#[derive(Args, Debug)]
pub(crate) struct DashboardsArgs {
    /// The proxy's config file: its routers' `service.objectives` become rules.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The directory to write `weft-rules.yml` and `weft-dashboard.json` into (created if
    /// missing; existing files of those names are replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

/// Runs `weft dashboards`: exit 0 when both files were written, 1 otherwise (an invalid
/// config file, an unwritable directory).
pub(crate) fn run(args: DashboardsArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            output::problem(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let objectives = crate::telemetry_sources::objectives(&config);
    let files = [
        ("weft-rules.yml", rules::render(&objectives)),
        ("weft-dashboard.json", grafana::render(&objectives)),
    ];
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        output::problem(&format!("{}: {e}", args.out.display()));
        return ExitCode::FAILURE;
    }
    let mut written = String::new();
    for (name, text) in files {
        let path = args.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            output::problem(&format!("{}: {e}", path.display()));
            return ExitCode::FAILURE;
        }
        written.push_str(&format!("wrote {}\n", path.display()));
    }
    if objectives.is_empty() {
        output::problem("no objectives in the config: the rules file has no rules");
    }
    output::exit(output::write_stdout(&written), true)
}

/// The PromQL label matchers selecting the series an objective covers: its router, and the
/// services under its prefix (identified requests only).
fn selector(router: &str, objective: &Objective) -> String {
    let mut s = format!("router=\"{}\", service!=\"[unidentified]\"", escape(router));
    if let Some(prefix) = &objective.prefix {
        let re = regex_escape(&prefix.to_string());
        s.push_str(&format!(", service=~\"{}(/.*)?\"", escape(&re)));
    }
    s
}

/// Escapes a PromQL string literal's content.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Escapes RE2 metacharacters.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A regex matching the `le` label of the latency bucket `bound` however it is written
/// (`0.25`, `1.0`, `1`).
fn le_regex(bound: f64) -> String {
    let s = regex_escape(&bound.to_string());
    if s.contains('.') {
        format!("{s}0*")
    } else {
        format!("{s}(\\.0*)?")
    }
}
