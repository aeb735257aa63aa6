//! `weft top`: a live view of the busiest services and routes, refreshed every window.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::time::Instant;

use crate::fleet::{self, Fleet, FleetArgs, Windows};
use crate::golden::{self, Golden};
use crate::output::{self, Output};
use crate::table;

/// Moves the cursor home and clears the screen (ANSI), before each frame on a terminal.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Arguments of `weft top`.
#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Only this router.
    #[arg(short, long, value_name = "LABEL")]
    router: Option<String>,
    /// Refresh interval: each table covers the requests since the previous scrape.
    #[arg(long, default_value = "2s", value_parser = fleet::parse_window)]
    window: Duration,
    /// Show at most this many rows, the most requested first.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Stop after this many tables (default: run until interrupted).
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,
    /// Output format; JSON is one object per line, one line per window.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One row: `(service, route, router)` and its numbers.
type Row = ((String, String, String), Golden);

/// Runs `weft top` until interrupted, stdout closes, or `--iterations` tables are out.
/// Exits non-zero if no proxy could ever be read.
pub(crate) fn run(args: TopArgs) -> ExitCode {
    let _ = crate::logging::init("warn");
    let fleet = match args.fleet.resolve() {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    if fleet.admins.is_empty() {
        return usage("no admin address to read: the fleet file lists none");
    }
    match output::block_on(top(&args, fleet)) {
        Ok(code) => code,
        Err(e) => usage(&format!("cannot start a runtime: {e}")),
    }
}

fn usage(e: &str) -> ExitCode {
    output::problem(e);
    ExitCode::from(2)
}

async fn top(args: &TopArgs, fleet: Fleet) -> ExitCode {
    let live = args.output == Output::Text && output::stdout_is_terminal();
    let mut start = Instant::now();
    let mut prev = fleet::scrape_all(&fleet.admins).await;
    let mut fleet_problems = fleet.problems.clone();
    let mut any_read = false;
    let mut tables = 0;
    loop {
        tokio::time::sleep_until(start + args.window).await;
        start = Instant::now();
        let cur = fleet::scrape_all(&fleet.admins).await;
        let mut w = fleet::windows(&fleet.admins, &prev, &cur);
        // The fleet file's problems are reported once, with the first table.
        fleet_problems.append(&mut w.problems);
        w.problems = std::mem::take(&mut fleet_problems);
        any_read |= !w.proxies.is_empty();

        let rows = rows(args, &w);
        let frame = match args.output {
            Output::Json => output::json(&to_json(args, &w, &rows), true),
            Output::Text => frame(args, &fleet, &w, &rows, live),
        };
        if !live {
            w.problems.iter().for_each(|p| output::problem(&p.error));
        }
        if let Err(e) = output::write_stdout(&frame) {
            return output::exit(Err(e), any_read);
        }
        tables += 1;
        if args.iterations.is_some_and(|n| tables >= n) {
            break;
        }
        prev = cur;
    }
    if !any_read {
        output::problem("no proxy could be read");
    }
    output::exit(Ok(()), any_read)
}

/// The rows with requests in the window, most requests per second first, at most `limit`.
fn rows(args: &TopArgs, w: &Windows) -> Vec<Row> {
    let router = args.router.as_deref();
    let mut rows: Vec<Row> = golden::aggregate(&w.proxies, |s| {
        let r = s.label("router")?;
        if router.is_some_and(|want| want != r) {
            return None;
        }
        let service = golden::label(s, "service")?;
        Some((service, golden::label(s, "route")?, r.to_owned()))
    })
    .into_iter()
    .filter(|(_, g)| g.requests > 0.0)
    .collect();
    sort(&mut rows);
    rows.truncate(args.limit);
    rows
}

/// Most requests per second first; ties by name, so the order does not flicker.
fn sort(rows: &mut [Row]) {
    rows.sort_by(|(ka, a), (kb, b)| b.rps.total_cmp(&a.rps).then_with(|| ka.cmp(kb)));
}

fn frame(args: &TopArgs, fleet: &Fleet, w: &Windows, rows: &[Row], live: bool) -> String {
    let mut out = String::new();
    if live {
        out.push_str(CLEAR);
    }
    out.push_str(&format!(
        "weft top: {} of {} proxies read, last {}, busiest services and routes (weft does not \
         label paths)\n\n",
        w.proxies.len(),
        fleet.admins.len(),
        humantime::format_duration(args.window)
    ));
    if rows.is_empty() {
        out.push_str("no requests in this window\n");
    } else {
        let mut lines = vec![table::cells(&[
            "SERVICE",
            "ROUTE",
            "ROUTER",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
        ])];
        for ((service, route, router), g) in rows {
            let mut c = vec![service.clone(), route.clone(), router.clone()];
            c.extend(g.cells());
            lines.push(c);
        }
        out.push_str(&table::align(&lines));
    }
    if live {
        // On a terminal the problems stay in the frame instead of scrolling it away.
        for p in &w.problems {
            out.push_str(&format!("problem: {}\n", p.error));
        }
    } else {
        out.push('\n');
    }
    out
}

fn to_json(args: &TopArgs, w: &Windows, rows: &[Row]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|((service, route, router), g)| {
            let mut v = json!({ "service": service, "route": route, "router": router });
            g.add_to_json(&mut v);
            v
        })
        .collect();
    json!({
        "window_seconds": args.window.as_secs_f64(),
        "proxies": w.proxies.iter().map(|p| &p.admin).collect::<Vec<_>>(),
        "rows": rows,
        "problems": w.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, rps: f64) -> Row {
        let g = Golden {
            rps,
            requests: rps * 2.0,
            ..Golden::default()
        };
        ((service.into(), "[default]".into(), "outbound".into()), g)
    }

    #[test]
    fn busiest_first_then_by_name() {
        let mut rows = vec![row("/svc/a", 1.0), row("/svc/c", 5.0), row("/svc/b", 5.0)];
        sort(&mut rows);
        let order: Vec<&str> = rows.iter().map(|((s, _, _), _)| s.as_str()).collect();
        assert_eq!(order, ["/svc/b", "/svc/c", "/svc/a"]);
    }
}
