//! Which proxies a CLI command talks to (`--admin`, repeatable, and `--fleet FILE`), and
//! scraping their `/metrics`: once, or twice a window apart to compute rates. A proxy that
//! cannot be read becomes a [`Problem`]; the others are still used.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use weft_telemetry::scrape::{Page, Sample};

/// The admin address used when neither `--admin` nor `--fleet` is given (DESIGN.md's default).
pub(crate) const DEFAULT_ADMIN: &str = "127.0.0.1:9990";

/// The proxies to talk to.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FleetArgs {
    /// A proxy's admin server; repeat for several proxies. With neither --admin nor --fleet,
    /// 127.0.0.1:9990.
    #[arg(long = "admin", value_name = "HOST:PORT")]
    pub(crate) admins: Vec<String>,
    /// A file listing admin servers, one HOST:PORT per line; `#` starts a comment. Combines
    /// with --admin.
    #[arg(long, value_name = "FILE")]
    pub(crate) fleet: Option<PathBuf>,
}

/// The admin addresses to use, and what was wrong in the fleet file.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Fleet {
    /// Distinct addresses, `--admin` ones first, in the order given.
    pub(crate) admins: Vec<String>,
    /// Fleet file lines that are not an address.
    pub(crate) problems: Vec<Problem>,
}

/// Something that went wrong with one proxy (or one fleet file line); the command reports
/// it and goes on with the rest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Problem {
    /// The admin address, or `FILE:LINE` for a fleet file line.
    pub(crate) source: String,
    /// What went wrong, one line.
    pub(crate) error: String,
}

/// One scrape of one proxy: when it answered, and its page or why there is none.
#[derive(Clone, Debug)]
pub(crate) struct Scrape {
    pub(crate) at: Instant,
    pub(crate) page: Result<Page, String>,
}

/// One proxy read twice: its samples at the start and the end of a window.
#[derive(Clone, Debug)]
pub(crate) struct ProxyWindow {
    pub(crate) admin: String,
    /// Seconds between the two scrapes' answers.
    pub(crate) secs: f64,
    pub(crate) prev: Vec<Sample>,
    pub(crate) cur: Vec<Sample>,
}

/// A window over the fleet: the proxies read twice and the problems met.
#[derive(Clone, Debug, Default)]
pub(crate) struct Windows {
    pub(crate) proxies: Vec<ProxyWindow>,
    pub(crate) problems: Vec<Problem>,
}

// === impl FleetArgs ===

impl FleetArgs {
    /// Reads the fleet file, if any, and returns the distinct addresses. An unreadable fleet
    /// file is an error; bad lines in it are problems. No address at all falls back to
    /// [`DEFAULT_ADMIN`] only when neither flag was given.
    pub(crate) fn resolve(&self) -> Result<Fleet, String> {
        let mut fleet = Fleet::default();
        for a in &self.admins {
            match parse_addr(a) {
                Ok(a) => fleet.push(a),
                Err(e) => fleet.problems.push(Problem {
                    source: a.clone(),
                    error: format!("--admin {a:?}: {e}"),
                }),
            }
        }
        if let Some(file) = &self.fleet {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--fleet {}: {e}", file.display()))?;
            let (admins, bad) = parse_fleet(&text);
            admins.into_iter().for_each(|a| fleet.push(a));
            for (line, error) in bad {
                let source = format!("{}:{line}", file.display());
                fleet.problems.push(Problem {
                    error: format!("{source}: {error}"),
                    source,
                });
            }
        }
        if self.admins.is_empty() && self.fleet.is_none() {
            fleet.push(DEFAULT_ADMIN.to_owned());
        }
        Ok(fleet)
    }
}

// === impl Fleet ===

impl Fleet {
    fn push(&mut self, admin: String) {
        if !self.admins.contains(&admin) {
            self.admins.push(admin);
        }
    }
}

/// Parses a fleet file: one admin address (`HOST:PORT`, optionally `http://HOST:PORT/`) per
/// line; `#` starts a comment; blank lines are ignored. Returns the addresses in file order
/// and the bad lines as `(1-based line number, problem)`.
pub(crate) fn parse_fleet(text: &str) -> (Vec<String>, Vec<(usize, String)>) {
    let mut admins = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_addr(line) {
            Ok(a) => admins.push(a),
            Err(e) => bad.push((i + 1, format!("{line:?}: {e}"))),
        }
    }
    (admins, bad)
}

/// Checks and normalizes one admin address: `HOST:PORT` with a port 1..=65535, an
/// optional `http://` in front and `/` behind.
fn parse_addr(s: &str) -> Result<String, String> {
    let s = s.trim();
    let s = s.strip_prefix("http://").unwrap_or(s);
    let s = s.strip_suffix('/').unwrap_or(s);
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected HOST:PORT".to_owned());
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err("expected HOST:PORT".to_owned());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_owned()),
        _ => Err(format!("bad port {port:?}: expected 1..65535")),
    }
}

/// Parses `--window`: a duration with a unit from 100ms to 1h.
pub(crate) fn parse_window(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => Ok(d),
        Ok(_) => Err(format!("{s}: expected 100ms to 1h")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

/// Fetches `/metrics` of every admin in parallel; the result is in `admins` order. A page
/// without a single `weft_` sample is an error (not a weft proxy, or a version whose
/// metrics this CLI cannot read); a page with some lines that do not parse is kept.
pub(crate) async fn scrape_all(admins: &[String]) -> Vec<Scrape> {
    let mut tasks = JoinSet::new();
    for (i, admin) in admins.iter().enumerate() {
        let admin = admin.clone();
        tasks.spawn(async move { (i, scrape(&admin).await) });
    }
    let mut out: Vec<Option<Scrape>> = vec![None; admins.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, s)) = joined {
            out[i] = Some(s);
        }
    }
    out.into_iter()
        .map(|s| {
            s.unwrap_or_else(|| Scrape {
                at: Instant::now(),
                page: Err("scrape task failed".to_owned()),
            })
        })
        .collect()
}

async fn scrape(admin: &str) -> Scrape {
    let page = match crate::admin_client::get(admin, "/metrics").await {
        Ok(text) => {
            let page = Page::parse(&text);
            if page.has_weft_metrics() {
                Ok(page)
            } else {
                Err(format!(
                    "admin {admin}: /metrics has no weft_ metrics ({} lines that parse, {} that \
                     do not): not a weft proxy, or a version this CLI cannot read",
                    page.samples.len(),
                    page.bad_lines
                ))
            }
        }
        Err(e) => Err(describe(&e)),
    };
    Scrape {
        at: Instant::now(),
        page,
    }
}

/// One line for an admin request's error: the outermost context (which names the admin
/// and what failed) and the root cause, without the layers of client internals between.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let root = e.root_cause().to_string();
    let top = e.to_string();
    if e.chain().count() > 1 && !top.contains(&root) {
        format!("{top}: {root}")
    } else {
        top
    }
}

/// The problems of one round of scrapes: failed scrapes, and pages with unparsable lines.
pub(crate) fn scrape_problems(admins: &[String], scrapes: &[Scrape]) -> Vec<Problem> {
    admins
        .iter()
        .zip(scrapes)
        .filter_map(|(admin, s)| {
            let error = match &s.page {
                Err(e) => e.clone(),
                Ok(p) => format!("admin {admin}: {}", p.problem()?),
            };
            Some(Problem {
                source: admin.clone(),
                error,
            })
        })
        .collect()
}

/// Pairs two rounds of scrapes of `admins` into windows. A proxy whose second scrape
/// failed is a problem; one whose first failed but second worked is a problem too (no
/// window), as is one whose page has unparsable lines (then it is used anyway).
pub(crate) fn windows(admins: &[String], prev: &[Scrape], cur: &[Scrape]) -> Windows {
    let mut w = Windows {
        problems: scrape_problems(admins, cur),
        ..Windows::default()
    };
    for ((admin, p), c) in admins.iter().zip(prev).zip(cur) {
        match (&p.page, &c.page) {
            (Ok(pp), Ok(cp)) => w.proxies.push(ProxyWindow {
                admin: admin.clone(),
                secs: c.at.saturating_duration_since(p.at).as_secs_f64(),
                prev: pp.samples.clone(),
                cur: cp.samples.clone(),
            }),
            (Err(e), Ok(_)) => w.problems.push(Problem {
                source: admin.clone(),
                error: format!("{e} (first scrape; no window for this proxy)"),
            }),
            (_, Err(_)) => {}
        }
    }
    w
}

/// Scrapes every proxy twice, `window` apart (from the start of the first round), and
/// returns the windows, with the fleet file's problems first.
pub(crate) async fn measure(fleet: &Fleet, window: Duration) -> Windows {
    let start = Instant::now();
    let prev = scrape_all(&fleet.admins).await;
    tokio::time::sleep_until(start + window).await;
    let cur = scrape_all(&fleet.admins).await;
    let mut w = windows(&fleet.admins, &prev, &cur);
    let mut problems = fleet.problems.clone();
    problems.append(&mut w.problems);
    w.problems = problems;
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_file_with_comments_blanks_and_bad_lines() {
        let text = "# the fleet\n\
                    127.0.0.1:9990\n\
                    \n\
                    10.0.0.2:9990   # rack 2\n\
                    http://proxy-3.example:9990/\n\
                    nonsense\n\
                    10.0.0.4:99999\n\
                    \t  # indented comment\n\
                    [::1]:9990\n";
        let (admins, bad) = parse_fleet(text);
        assert_eq!(
            admins,
            [
                "127.0.0.1:9990",
                "10.0.0.2:9990",
                "proxy-3.example:9990",
                "[::1]:9990"
            ]
        );
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, 6);
        assert!(bad[0].1.contains("expected HOST:PORT"), "{}", bad[0].1);
        assert_eq!(bad[1].0, 7);
        assert!(bad[1].1.contains("bad port"), "{}", bad[1].1);
        assert_eq!(parse_fleet(""), (Vec::new(), Vec::new()));
    }

    #[test]
    fn resolve_dedups_and_defaults() {
        let none = FleetArgs::default().resolve().unwrap();
        assert_eq!(none.admins, [DEFAULT_ADMIN]);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fleet.txt");
        std::fs::write(&file, "127.0.0.1:2\n127.0.0.1:1\nbad line\n").unwrap();
        let args = FleetArgs {
            admins: vec!["127.0.0.1:1".into(), ":3".into()],
            fleet: Some(file.clone()),
        };
        let f = args.resolve().unwrap();
        assert_eq!(f.admins, ["127.0.0.1:1", "127.0.0.1:2"]);
        let sources: Vec<&str> = f.problems.iter().map(|p| p.source.as_str()).collect();
        let line3 = format!("{}:3", file.display());
        assert_eq!(sources, [":3", line3.as_str()]);

        // An empty fleet file is not replaced by the default.
        std::fs::write(&file, "# nobody yet\n").unwrap();
        let f = FleetArgs {
            admins: Vec::new(),
            fleet: Some(file),
        };
        assert!(f.resolve().unwrap().admins.is_empty());

        let missing = FleetArgs {
            admins: Vec::new(),
            fleet: Some(dir.path().join("missing")),
        };
        assert!(missing.resolve().unwrap_err().starts_with("--fleet"));
    }

    #[test]
    fn window_bounds() {
        assert_eq!(parse_window("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_window("10ms").is_err());
        assert!(parse_window("2h").is_err());
        assert!(parse_window("soon").is_err());
    }

    #[test]
    fn windows_pair_scrapes_and_report_problems() {
        let t0 = Instant::now();
        let ok = |text: &str, secs: u64| Scrape {
            at: t0 + Duration::from_secs(secs),
            page: Ok(Page::parse(text)),
        };
        let err = |e: &str| Scrape {
            at: t0,
            page: Err(e.to_owned()),
        };
        let admins: Vec<String> = ["a:1", "b:1", "c:1", "d:1"].map(String::from).into();
        let prev = [
            ok("weft_x 1", 0),
            ok("weft_x 1", 0),
            err("down"),
            ok("weft_x 1", 0),
        ];
        let cur = [
            ok("weft_x 2", 2),
            err("admin b:1: unreachable"),
            ok("weft_x 2", 2),
            ok("weft_x 2\njunk junk\n", 3),
        ];
        let w = windows(&admins, &prev, &cur);
        let read: Vec<(&str, f64)> = w
            .proxies
            .iter()
            .map(|p| (p.admin.as_str(), p.secs))
            .collect();
        assert_eq!(read, [("a:1", 2.0), ("d:1", 3.0)]);
        let problems: Vec<(&str, &str)> = w
            .problems
            .iter()
            .map(|p| (p.source.as_str(), p.error.as_str()))
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0], ("b:1", "admin b:1: unreachable"));
        assert!(problems[1]
            .1
            .starts_with("admin d:1: 1 line(s) of /metrics did not parse"));
        assert_eq!(problems[2].0, "c:1");
        assert!(problems[2].1.contains("first scrape"));
    }
}
