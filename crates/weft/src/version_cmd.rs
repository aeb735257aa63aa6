//! `weft version [--proxy]`: this CLI's version, and with `--proxy` the versions a fleet of
//! proxies runs (from `weft_build_info{version}`), with how many proxies run each.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::fleet::{self, FleetArgs, Problem};
use crate::output::{self, Output};
use crate::table;

/// This CLI's version.
pub(crate) const CLI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a proxy whose metrics lack `weft_build_info` is listed as.
pub(crate) const UNKNOWN: &str = "unknown";

/// Arguments of `weft version`.
#[derive(Args, Debug)]
pub(crate) struct VersionArgs {
    /// Also list the versions the proxies run (--admin/--fleet, default 127.0.0.1:9990),
    /// with how many proxies run each, and the proxies that could not be read. Implied by
    /// --admin and --fleet.
    #[arg(long)]
    proxy: bool,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The fleet's versions: admins by version, and the proxies that could not be read.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Versions {
    /// Version -> admin addresses, newest version first.
    pub(crate) by_version: Vec<(String, Vec<String>)>,
    pub(crate) unreadable: Vec<Problem>,
}

/// Runs `weft version`. With `--proxy`, exits non-zero when no proxy could be read.
pub(crate) fn run(args: VersionArgs) -> ExitCode {
    let proxy = args.proxy || !args.fleet.admins.is_empty() || args.fleet.fleet.is_some();
    if !proxy {
        let text = match args.output {
            Output::Text => format!("weft {CLI_VERSION}\n"),
            Output::Json => output::json(&json!({ "cli": CLI_VERSION }), false),
        };
        return output::exit(output::write_stdout(&text), true);
    }
    let _ = crate::logging::init("warn");
    let fleet = match args.fleet.resolve() {
        Ok(f) => f,
        Err(e) => {
            output::problem(&e);
            return ExitCode::from(2);
        }
    };
    let scrapes = match output::block_on(fleet::scrape_all(&fleet.admins)) {
        Ok(s) => s,
        Err(e) => {
            output::problem(&format!("cannot start a runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let scraped = fleet::scrape_problems(&fleet.admins, &scrapes);
    fleet
        .problems
        .iter()
        .chain(&scraped)
        .for_each(|p| output::problem(&p.error));
    let versions = versions(
        fleet
            .admins
            .iter()
            .zip(&scrapes)
            .map(|(a, s)| (a.as_str(), s.page.as_ref().map(|p| p.version()))),
    );
    // The proxies that could not be read are listed as `unreachable`; `problems` holds the
    // rest (fleet file lines, pages with lines that do not parse).
    let mut problems = fleet.problems.clone();
    problems.extend(
        scraped
            .into_iter()
            .filter(|p| !versions.unreadable.iter().any(|u| u.source == p.source)),
    );
    let read = versions.by_version.iter().any(|(_, a)| !a.is_empty());
    let text = match args.output {
        Output::Text => render(&versions),
        Output::Json => output::json(&to_json(&versions, &problems), false),
    };
    if !read {
        output::problem("no proxy could be read");
    }
    output::exit(output::write_stdout(&text), read)
}

/// Groups proxies by the version they report; a proxy without `weft_build_info` counts as
/// [`UNKNOWN`], one that could not be scraped is unreadable.
pub(crate) fn versions<'a, I>(proxies: I) -> Versions
where
    I: IntoIterator<Item = (&'a str, Result<Option<&'a str>, &'a String>)>,
{
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (admin, version) in proxies {
        match version {
            Ok(v) => by
                .entry(v.unwrap_or(UNKNOWN).to_owned())
                .or_default()
                .push(admin.to_owned()),
            Err(e) => unreadable.push(Problem {
                source: admin.to_owned(),
                error: e.clone(),
            }),
        }
    }
    let mut by_version: Vec<(String, Vec<String>)> = by.into_iter().collect();
    by_version.sort_by(|(a, _), (b, _)| compare(b, a));
    Versions {
        by_version,
        unreadable,
    }
}

/// Orders versions like `0.9.1` < `0.10.0` < `1.0.0`: dot-separated parts compare as
/// numbers when both are numbers, else as text; `unknown` sorts below every version.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    match (a == UNKNOWN, b == UNKNOWN) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    let parts = |v: &'_ str| {
        v.split(['.', '-', '+'])
            .map(|p| p.to_owned())
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

fn render(v: &Versions) -> String {
    let mut rows = vec![table::cells(&["VERSION", "PROXIES", "ADMIN"])];
    for (version, admins) in &v.by_version {
        rows.push(vec![
            version.clone(),
            admins.len().to_string(),
            admins.join(","),
        ]);
    }
    if !v.unreadable.is_empty() {
        let admins: Vec<&str> = v.unreadable.iter().map(|p| p.source.as_str()).collect();
        rows.push(vec![
            "unreachable".to_owned(),
            admins.len().to_string(),
            admins.join(","),
        ]);
    }
    format!("weft {CLI_VERSION} (this CLI)\n\n{}", table::align(&rows))
}

fn to_json(v: &Versions, problems: &[Problem]) -> serde_json::Value {
    let versions: Vec<serde_json::Value> = v
        .by_version
        .iter()
        .map(|(version, admins)| {
            json!({ "version": version, "proxies": admins.len(), "admins": admins })
        })
        .collect();
    json!({
        "cli": CLI_VERSION,
        "versions": versions,
        "unreachable": v.unreadable,
        "problems": problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare("0.9.1", "0.10.0"), Ordering::Less);
        assert_eq!(compare("1.0.0", "0.10.0"), Ordering::Greater);
        assert_eq!(compare("0.1.0", "0.1.0"), Ordering::Equal);
        assert_eq!(compare("0.1", "0.1.0"), Ordering::Less);
        assert_eq!(compare(UNKNOWN, "0.0.1"), Ordering::Less);
        assert_eq!(compare("0.2.0-rc1", "0.2.0-rc2"), Ordering::Less);
    }

    #[test]
    fn groups_by_version_newest_first() {
        let down = "admin c: unreachable".to_owned();
        let v = versions([
            ("a", Ok(Some("0.9.0"))),
            ("b", Ok(Some("0.10.0"))),
            ("c", Err(&down)),
            ("d", Ok(Some("0.9.0"))),
            ("e", Ok(None)),
        ]);
        let summary: Vec<(&str, usize)> = v
            .by_version
            .iter()
            .map(|(v, a)| (v.as_str(), a.len()))
            .collect();
        assert_eq!(summary, [("0.10.0", 1), ("0.9.0", 2), (UNKNOWN, 1)]);
        assert_eq!(v.unreadable[0].source, "c");
        let text = render(&v);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["weft", CLI_VERSION, "(this", "CLI)"]);
        assert_eq!(lines[2], ["VERSION", "PROXIES", "ADMIN"]);
        assert_eq!(lines[4], ["0.9.0", "2", "a,d"]);
        assert_eq!(lines[6], ["unreachable", "1", "c"]);
    }
}
