//! `weft slo`: the service-level objectives of a running proxy, as its admin server computes
//! them (`GET /objectives.json`): attainment, error budget left, burn rates and a verdict.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::output::{self, Output};
use crate::table;

/// Arguments of `weft slo`.
#[derive(Args, Debug)]
pub(crate) struct SloArgs {
    /// The proxy's admin address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9990")]
    admin: String,
    /// Only this router.
    #[arg(short, long, value_name = "LABEL")]
    router: Option<String>,
    /// Only this logical service, e.g. /svc/books.
    #[arg(short, long, value_name = "NAME")]
    service: Option<String>,
    /// Exit 1 when an objective shown is `burning` or `exhausted` (for scripts and checks).
    #[arg(long)]
    fail_unless_ok: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs `weft slo`: exit 0 when the proxy could be read (and, with `--fail-unless-ok`,
/// every objective shown is `ok`), 1 otherwise.
pub(crate) fn run(args: SloArgs) -> ExitCode {
    let _ = crate::logging::init("warn");
    let read = output::block_on(crate::admin_client::get(&args.admin, "/objectives.json"));
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            output::problem(&format!("{e:#}"));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            output::problem(&format!("cannot start a runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let all: Vec<Value> = match serde_json::from_str(&body) {
        Ok(Value::Array(list)) => list,
        _ => {
            output::problem("admin /objectives.json: not a JSON list");
            return ExitCode::FAILURE;
        }
    };
    let shown: Vec<Value> = all
        .into_iter()
        .filter(|s| keep(&args.router, &s["router"]) && keep(&args.service, &s["service"]))
        .collect();
    let ok = !args.fail_unless_ok || shown.iter().all(|s| s["verdict"] == "ok");
    let text = match args.output {
        Output::Json => output::json(&Value::Array(shown), false),
        Output::Text if shown.is_empty() => {
            "no objectives: configure them under a router's service.objectives\n".into()
        }
        Output::Text => render(&shown),
    };
    output::exit(output::write_stdout(&text), ok)
}

fn keep(want: &Option<String>, got: &Value) -> bool {
    want.as_deref().is_none_or(|w| got.as_str() == Some(w))
}

/// One aligned row per objective.
fn render(list: &[Value]) -> String {
    let windows: Vec<String> = list[0]["burnRates"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|p| p[0].as_str())
                .map(|w| format!("BURN {w}"))
                .collect()
        })
        .unwrap_or_default();
    let mut header = table::cells(&[
        "ROUTER",
        "SERVICE",
        "OBJECTIVE",
        "TARGET",
        "WINDOW",
        "ATTAINMENT",
        "BUDGET LEFT",
    ]);
    header.extend(windows);
    header.extend(table::cells(&["REQUESTS", "VERDICT"]));
    let mut rows = vec![header];
    for s in list {
        let text = |v: &Value| v.as_str().map_or_else(table::dash, str::to_owned);
        let mut row = vec![
            text(&s["router"]),
            text(&s["service"]),
            text(&s["objective"]),
            text(&s["config"]["target"]),
            text(&s["config"]["window"]),
            s["attainment"]
                .as_f64()
                .map_or_else(table::dash, |a| format!("{:.3}%", a * 100.0)),
            s["budgetLeft"]
                .as_f64()
                .map_or_else(table::dash, table::percent),
        ];
        for pair in s["burnRates"].as_array().into_iter().flatten() {
            row.push(
                pair[1]
                    .as_f64()
                    .map_or_else(table::dash, |b| format!("{b:.2}x")),
            );
        }
        row.push(
            s["requests"]
                .as_u64()
                .map_or_else(table::dash, |n| n.to_string()),
        );
        row.push(text(&s["verdict"]));
        rows.push(row);
    }
    table::align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_aligned_row_per_objective() {
        let list: Vec<Value> = serde_json::from_str(
            r#"[{"router":"out","service":"/svc/a","objective":"success-rate",
                 "config":{"kind":"successRate","target":"99.9%","window":"28days"},
                 "attainment":0.95,"budgetLeft":-49.0,"requests":1000,"bad":50,
                 "burnRates":[["5m",50.0],["1h",50.0]],"verdict":"exhausted"}]"#,
        )
        .unwrap();
        let text = render(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ROUTER   SERVICE   OBJECTIVE"),
            "{text}"
        );
        assert!(lines[0].contains("BURN 5m   BURN 1h"), "{text}");
        assert!(lines[1].contains("95.000%"), "{text}");
        assert!(lines[1].contains("-4900.00%"), "{text}");
        assert!(lines[1].ends_with("1000       exhausted"), "{text}");
    }
}
