//! `weft stat`: golden metrics per router or per service, over a window, for one proxy or a
//! fleet.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::fleet::{self, FleetArgs, Windows};
use crate::golden::{self, Golden};
use crate::output::{self, Output};
use crate::table;

/// Arguments of `weft stat`.
#[derive(Args, Debug)]
pub(crate) struct StatArgs {
    /// What a row is: a router (all its services together) or one service of one router.
    #[arg(value_enum, default_value_t = Resource::Routers)]
    resource: Resource,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Only this router.
    #[arg(short, long, value_name = "LABEL")]
    router: Option<String>,
    /// Rates are computed from two scrapes this far apart.
    #[arg(long, default_value = "2s", value_parser = fleet::parse_window)]
    window: Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// What one row of `weft stat` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Resource {
    /// One row per router label, summed over the fleet.
    #[value(alias = "router", alias = "rt")]
    Routers,
    /// One row per (router, service), summed over the fleet.
    #[value(alias = "service", alias = "svc")]
    Services,
}

/// Runs `weft stat`: exit 0 when at least one proxy could be read.
pub(crate) fn run(args: StatArgs) -> ExitCode {
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
        (Output::Text, true) => render(&args, &w),
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

/// One row: its key (router, and service in the service view), numbers, and open
/// connections (router view only).
struct Row {
    router: String,
    service: Option<String>,
    golden: Golden,
    open_connections: Option<f64>,
}

fn rows(args: &StatArgs, w: &Windows) -> Vec<Row> {
    let router_ok = |r: &str| args.router.as_deref().is_none_or(|want| want == r);
    match args.resource {
        Resource::Routers => {
            let open = golden::gauge(&w.proxies, "weft_open_connections", |s| {
                golden::label(s, "router")
            });
            golden::aggregate(&w.proxies, |s| {
                golden::label(s, "router").filter(|r| router_ok(r))
            })
            .into_iter()
            .map(|(router, golden)| Row {
                open_connections: Some(open.get(&router).copied().unwrap_or(0.0)),
                router,
                service: None,
                golden,
            })
            .collect()
        }
        Resource::Services => golden::aggregate(&w.proxies, |s| {
            let router = golden::label(s, "router").filter(|r| router_ok(r))?;
            Some((router, golden::label(s, "service")?))
        })
        .into_iter()
        .map(|((router, service), golden)| Row {
            router,
            service: Some(service),
            golden,
            open_connections: None,
        })
        .collect(),
    }
}

fn render(args: &StatArgs, w: &Windows) -> String {
    let rows = rows(args, w);
    let header: &[&str] = match args.resource {
        Resource::Routers => &[
            "ROUTER",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
            "CONNECTIONS",
        ],
        Resource::Services => &[
            "SERVICE",
            "ROUTER",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
        ],
    };
    let mut lines = vec![table::cells(header)];
    for r in rows {
        let mut c = match &r.service {
            Some(s) => vec![s.clone(), r.router.clone()],
            None => vec![r.router.clone()],
        };
        c.extend(r.golden.cells());
        if let Some(open) = r.open_connections {
            c.push(format!("{open:.0}"));
        }
        lines.push(c);
    }
    table::align(&lines)
}

fn to_json(args: &StatArgs, w: &Windows) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows(args, w)
        .into_iter()
        .map(|r| {
            let mut v = json!({ "router": r.router });
            if let Some(s) = r.service {
                v["service"] = json!(s);
            }
            r.golden.add_to_json(&mut v);
            if let Some(open) = r.open_connections {
                v["open_connections"] = json!(open.round() as i64);
            }
            v
        })
        .collect();
    let resource = match args.resource {
        Resource::Routers => "routers",
        Resource::Services => "services",
    };
    json!({
        "resource": resource,
        "window_seconds": args.window.as_secs_f64(),
        "proxies": w.proxies.iter().map(|p| &p.admin).collect::<Vec<_>>(),
        "rows": rows,
        "problems": w.problems,
    })
}
