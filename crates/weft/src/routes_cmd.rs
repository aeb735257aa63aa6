//! `weft routes`: golden metrics per route (the service profiles' route names, `[default]`
//! for requests no route matched), over a window, for one proxy or a fleet.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::fleet::{self, FleetArgs, Windows};
use crate::golden::{self, Golden};
use crate::output::{self, Output};
use crate::table;

/// Arguments of `weft routes`.
#[derive(Args, Debug)]
pub(crate) struct RoutesArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Only this router. In a sidecar mesh each request passes an outbound and an inbound
    /// router; pick one to count it once (default: every router, summed).
    #[arg(short, long, value_name = "LABEL")]
    router: Option<String>,
    /// Only this logical service, e.g. /svc/books.
    #[arg(short, long, value_name = "NAME")]
    service: Option<String>,
    /// Rates are computed from two scrapes this far apart.
    #[arg(long, default_value = "2s", value_parser = fleet::parse_window)]
    window: Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs `weft routes`: exit 0 when at least one proxy could be read.
pub(crate) fn run(args: RoutesArgs) -> ExitCode {
    let _ = crate::logging::init("warn");
    let fleet = match args.fleet.resolve() {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    if fleet.admins.is_empty() {
        return usage("no admin address to read: the fleet file lists none");
    }
    let w = match output::block_on(fleet::measure(&fleet, args.window)) {
        Ok(w) => w,
        Err(e) => return usage(&format!("cannot start a runtime: {e}")),
    };
    w.problems.iter().for_each(|p| output::problem(&p.error));
    let read = !w.proxies.is_empty();
    let text = match (args.output, read) {
        (Output::Json, _) => output::json(&to_json(&args, &w), false),
        (Output::Text, true) => render(&rows(&args, &w)),
        (Output::Text, false) => String::new(),
    };
    if !read {
        output::problem("no proxy could be read");
    }
    output::exit(output::write_stdout(&text), read)
}

fn usage(e: &str) -> ExitCode {
    output::problem(e);
    ExitCode::from(2)
}

/// `((service, route), numbers)`, sorted by service then route.
fn rows(args: &RoutesArgs, w: &Windows) -> Vec<((String, String), Golden)> {
    let router = args.router.as_deref();
    let service = args.service.as_deref();
    golden::aggregate(&w.proxies, |s| {
        if router.is_some_and(|r| s.label("router") != Some(r)) {
            return None;
        }
        let svc = s.label("service")?;
        if service.is_some_and(|want| want != svc) {
            return None;
        }
        Some((svc.to_owned(), golden::label(s, "route")?))
    })
    .into_iter()
    .collect()
}

/// The table: ROUTE SERVICE SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99.
fn render(rows: &[((String, String), Golden)]) -> String {
    let mut lines = vec![table::cells(&[
        "ROUTE",
        "SERVICE",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
    ])];
    for ((service, route), g) in rows {
        let mut c = vec![route.clone(), service.clone()];
        c.extend(g.cells());
        lines.push(c);
    }
    table::align(&lines)
}

fn to_json(args: &RoutesArgs, w: &Windows) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows(args, w)
        .into_iter()
        .map(|((service, route), g)| {
            let mut v = json!({ "route": route, "service": service });
            g.add_to_json(&mut v);
            v
        })
        .collect();
    json!({
        "router": args.router,
        "window_seconds": args.window.as_secs_f64(),
        "proxies": w.proxies.iter().map(|p| &p.admin).collect::<Vec<_>>(),
        "rows": rows,
        "problems": w.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_documented_columns() {
        let g = Golden {
            requests: 10.0,
            rps: 5.0,
            success: Some(1.0),
            latency_p50_seconds: Some(0.0004),
            latency_p95_seconds: Some(0.002),
            latency_p99_seconds: Some(0.02),
        };
        let text = render(&[(("/svc/books".into(), "get book".into()), g)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ROUTE      SERVICE      SUCCESS   RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99",
                "get book   /svc/books   100.00%   5.0   0.40ms        2.0ms         20ms",
            ]
        );
    }
}
