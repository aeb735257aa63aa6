//! `weft check`: runs every check, lists every failure (not only the first), one line per
//! check with a mark and, on a failure or a warning, a hint. Offline checks read a config file; online
//! checks talk to one proxy or a fleet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::json;
use weft_config::{Config, NamerConfig, NamerKind};
use weft_naming::FsNamer;

use crate::fleet::{self, FleetArgs, Scrape};
use crate::output::{self, Output};
use crate::version_cmd::{self, CLI_VERSION, UNKNOWN};

/// Arguments of `weft check`.
#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Check this config file: it parses and validates (dtabs included), and each fs namer's
    /// directory exists, is readable, and its service files parse.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Proxies to check (admin reachable, /ready, versions consistent). Without -c, --admin
    /// or --fleet, the proxy at 127.0.0.1:9990 is checked.
    #[command(flatten)]
    fleet: FleetArgs,
    /// A certificate expiring within this long fails the check (e.g. 2h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    cert_threshold: std::time::Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Check {
    /// What kind of check: `config`, `dtab`, `namer`, `identity`, `certificate`, `ingress tls`,
    /// `trust roots`, `fleet`, `admin`, `ready`, `reload`, `version`.
    check: &'static str,
    /// What was checked: a file, a router, a namer prefix, an admin address.
    target: String,
    /// False for a failure (exit code 1); true for a pass and for a warning.
    ok: bool,
    /// A warning: something to look at that does not fail the check (a proxy routing on the
    /// last state control sent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    warning: bool,
    /// What was found, one line.
    detail: String,
    /// What to do about a failure or a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl Check {
    fn pass(check: &'static str, target: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check,
            target: target.into(),
            ok: true,
            warning: false,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A warning: printed with its hint, but the check passes (exit code 0).
    fn warn(
        check: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
        hint: &str,
    ) -> Check {
        Check {
            warning: true,
            hint: Some(hint.to_owned()),
            ..Check::pass(check, target, detail)
        }
    }

    fn fail(
        check: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
        hint: &str,
    ) -> Check {
        Check {
            check,
            target: target.into(),
            ok: false,
            warning: false,
            detail: detail.into(),
            hint: Some(hint.to_owned()),
        }
    }

    /// `✔ config weft.yaml: parses ...` on a terminal, `ok   config ...` elsewhere (`⚠`/`WARN`
    /// for a warning, `✘`/`FAIL` for a failure); a failure or a warning ends with
    /// `(hint: ...)`.
    fn line(&self, terminal: bool) -> String {
        let mark = match (self.ok, self.warning, terminal) {
            (false, _, true) => "✘",
            (false, _, false) => "FAIL",
            (true, true, true) => "⚠",
            (true, true, false) => "WARN",
            (true, false, true) => "✔",
            (true, false, false) => "ok  ",
        };
        let mut line = format!("{mark} {} {}: {}", self.check, self.target, self.detail);
        if let Some(h) = &self.hint {
            line.push_str(&format!(" (hint: {h})"));
        }
        line.push('\n');
        line
    }
}

/// Runs `weft check`: exit 0 when every check passed (warnings included), 1 when any failed.
pub(crate) fn run(args: CheckArgs) -> ExitCode {
    // The fs namer logs bad files at `warn`; here they are check lines instead.
    let _ = crate::logging::init("error");
    let checks = match output::block_on(checks(&args)) {
        Ok(c) => c,
        Err(e) => {
            output::problem(&format!("cannot start a runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let ok = checks.iter().all(|c| c.ok);
    let text = match args.output {
        Output::Text => {
            let terminal = output::stdout_is_terminal();
            let mut text: String = checks.iter().map(|c| c.line(terminal)).collect();
            text.push_str(&summary(&checks));
            text
        }
        Output::Json => output::json(&json!({ "ok": ok, "checks": checks }), false),
    };
    output::exit(output::write_stdout(&text), ok)
}

/// The last line of the text output: how many checks failed, and how many warned.
fn summary(checks: &[Check]) -> String {
    let failed = checks.iter().filter(|c| !c.ok).count();
    let warnings = match checks.iter().filter(|c| c.warning).count() {
        0 => String::new(),
        1 => " (1 warning)".to_owned(),
        n => format!(" ({n} warnings)"),
    };
    match failed {
        0 => format!("\nall {} checks passed{warnings}\n", checks.len()),
        n => format!("\n{n} of {} checks failed{warnings}\n", checks.len()),
    }
}

async fn checks(args: &CheckArgs) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(file) = &args.config {
        out.extend(config_checks(file));
        if let Ok(config) = Config::load(file) {
            out.extend(identity_check(&config, args.cert_threshold));
            out.extend(outside_tls_checks(&config));
        }
    }
    let fleet_given = !args.fleet.admins.is_empty() || args.fleet.fleet.is_some();
    if fleet_given || args.config.is_none() {
        out.extend(proxy_checks(&args.fleet, args.cert_threshold).await);
    }
    out
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A certificate expiring at `not_after` (Unix seconds): fine, or expiring within
/// `threshold`, or expired.
fn expiry_check(target: String, not_after: i64, threshold: std::time::Duration) -> Check {
    let left = not_after - unix_now();
    let limit = i64::try_from(threshold.as_secs()).unwrap_or(i64::MAX);
    if left <= 0 {
        Check::fail(
            "certificate",
            target,
            "expired",
            "issue a new certificate (weft identity request) and check the renewal loop",
        )
    } else if left < limit {
        Check::fail(
            "certificate",
            target,
            format!("expires in {}", humantime::format_duration(std::time::Duration::from_secs(left as u64))),
            "renewal should have replaced it by now: check `weft identity request --renew` and the CA",
        )
    } else {
        Check::pass(
            "certificate",
            target,
            format!(
                "valid for {}",
                humantime::format_duration(std::time::Duration::from_secs(left as u64))
            ),
        )
    }
}

/// The config's identity: the files load (key matches, chained to the bundle, not expired)
/// and the certificate is not expiring within the threshold.
fn identity_check(config: &Config, threshold: std::time::Duration) -> Vec<Check> {
    let Some(settings) = &config.identity else {
        return Vec::new();
    };
    let target = settings.cert.display().to_string();
    let loaded = weft_tls::Identity::load(&weft_proxy::identity_config(settings));
    match loaded {
        Ok(identity) => vec![
            Check::pass(
                "identity",
                target.clone(),
                format!("{} chains to the trust bundle", identity.spiffe_id()),
            ),
            expiry_check(target, identity.not_after_unix(), threshold),
        ],
        Err(e) => vec![Check::fail(
            "identity",
            target,
            e.to_string(),
            "fix or re-issue the file named; a running proxy keeps its last good material",
        )],
    }
}

/// TLS towards and from outside the mesh: each ingress listener's certificates load (key
/// matches, PEM parses; the names they serve are shown), and each `client.tls.trustRoots`
/// set loads. A running proxy keeps its last good set when a file goes bad, so these catch
/// what the next restart would refuse.
fn outside_tls_checks(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for router in &config.routers {
        for server in &router.servers {
            let Some(tls) = &server.tls else { continue };
            let pairs: Vec<_> = tls
                .certificates
                .iter()
                .map(|c| (c.cert.clone(), c.key.clone()))
                .collect();
            let target = format!("router {} ingress {}", router.label, server.addr);
            out.push(match weft_tls::ServerCertificates::load(&pairs) {
                Ok(certs) => Check::pass(
                    "ingress tls",
                    target,
                    format!("certificates load, serving {:?}", certs.names()),
                ),
                Err(e) => Check::fail(
                    "ingress tls",
                    target,
                    e.to_string(),
                    "fix or replace the file named (cert and key must match)",
                ),
            });
        }
        if let Some(weft_config::ClientTlsConfig::Origin { trust_roots, .. }) = &router.client.tls {
            if trust_roots.is_empty() {
                continue;
            }
            let target = format!("router {} client.tls.trustRoots", router.label);
            out.push(match weft_tls::Origination::load(trust_roots) {
                Ok(_) => Check::pass("trust roots", target, "load"),
                Err(e) => Check::fail(
                    "trust roots",
                    target,
                    e.to_string(),
                    "point trustRoots at PEM files holding CA certificates",
                ),
            });
        }
    }
    out
}

// === offline: the config file ===

fn config_checks(file: &Path) -> Vec<Check> {
    let shown = file.display().to_string();
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "config",
                shown,
                e.to_string(),
                "fix the file at the line and column shown; the namer and dtab checks need a \
                 valid file and were not run",
            )]
        }
    };
    let mut out = vec![Check::pass(
        "config",
        shown,
        format!(
            "parses and validates ({} router(s), {} namer(s))",
            config.routers.len(),
            config.namers.len()
        ),
    )];
    for r in &config.routers {
        out.push(Check::pass(
            "dtab",
            format!("router {}", r.label),
            match r.dtab.dentries().len() {
                1 => "parses (1 dentry)".to_owned(),
                n => format!("parses ({n} dentries)"),
            },
        ));
    }
    for n in &config.namers {
        out.extend(namer_checks(n));
    }
    out
}

fn namer_checks(namer: &NamerConfig) -> Vec<Check> {
    let prefix = namer.prefix.to_string();
    // Backend namers are checked online, on the proxy's /namers.json.
    let root = match &namer.kind {
        NamerKind::Fs { root_dir } => root_dir,
        _ => return Vec::new(),
    };
    let shown = root.display();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => {
            return vec![Check::fail(
                "namer",
                prefix,
                format!("rootDir {shown}: {e}"),
                "create the directory or fix rootDir (relative to the config file); the proxy \
                 would route nothing through this namer",
            )]
        }
    };
    // The same files the namer reads: no hidden files, no editor backups.
    let files = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && !name.ends_with('~') && e.path().is_file()
        })
        .count();
    let errors = FsNamer::with_prefix(root.clone(), namer.prefix.clone()).errors();
    if errors.is_empty() {
        return vec![Check::pass(
            "namer",
            prefix,
            format!("rootDir {shown}: {files} service file(s) parse"),
        )];
    }
    errors
        .into_iter()
        .map(|e| {
            Check::fail(
                "namer",
                prefix.clone(),
                e,
                "each line is `host port` or `host port * weight`; the proxy keeps the file's \
                 last good addresses, or fails the service without any",
            )
        })
        .collect()
}

// === online: the proxies ===

async fn proxy_checks(args: &FleetArgs, threshold: std::time::Duration) -> Vec<Check> {
    let mut out = Vec::new();
    let fleet = match args.resolve() {
        Ok(f) => f,
        Err(e) => {
            out.push(Check::fail(
                "fleet",
                "--fleet",
                e,
                "the file lists one admin HOST:PORT per line",
            ));
            // Go on with the --admin addresses.
            let admins_only = FleetArgs {
                admins: args.admins.clone(),
                fleet: None,
            };
            match admins_only.resolve() {
                Ok(f) if !args.admins.is_empty() => f,
                _ => return out,
            }
        }
    };
    for p in &fleet.problems {
        out.push(Check::fail(
            "fleet",
            p.source.clone(),
            p.error.clone(),
            "one admin HOST:PORT per line; `#` starts a comment",
        ));
    }
    let scrapes = fleet::scrape_all(&fleet.admins).await;
    for (admin, scrape) in fleet.admins.iter().zip(&scrapes) {
        out.extend(admin_checks(admin, scrape, threshold).await);
    }
    out.extend(version_checks(&fleet.admins, &scrapes));
    out
}

async fn admin_checks(admin: &str, scrape: &Scrape, threshold: std::time::Duration) -> Vec<Check> {
    let page = match &scrape.page {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::fail(
                "admin",
                admin,
                without_admin(admin, e),
                "is the proxy running, with its admin server (admin.ip, admin.port) at this \
                 address and reachable from here?",
            )]
        }
    };
    let mut out = vec![match page.problem() {
        None => Check::pass("admin", admin, "reachable, /metrics readable"),
        Some(p) => Check::fail(
            "admin",
            admin,
            format!("reachable, but {p}"),
            "a proxy of another version? compare `weft version --proxy`",
        ),
    }];
    let expiry = page
        .samples
        .iter()
        .find(|s| s.name == "weft_identity_cert_expiry_timestamp_seconds")
        .map(|s| s.value as i64)
        .filter(|v| *v > 0);
    if let Some(not_after) = expiry {
        out.push(expiry_check(
            format!("{admin} identity"),
            not_after,
            threshold,
        ));
    }
    out.push(match crate::admin_client::get(admin, "/ready").await {
        Ok(_) => Check::pass("ready", admin, "/ready answers 200"),
        Err(e) => Check::fail(
            "ready",
            admin,
            without_admin(admin, &fleet::describe(&e)),
            "the proxy is still starting or is draining to shut down; see its log",
        ),
    });
    // An older proxy has no /namers.json: nothing to check then.
    if let Ok(text) = crate::admin_client::get(admin, "/namers.json").await {
        out.extend(namer_health_checks(admin, &text));
    }
    if let Ok(text) = crate::admin_client::get(admin, "/config.json").await {
        out.extend(reload_check(admin, &text));
    }
    out
}

/// The proxy's config version and last reload (the `reload` key of `/config.json`): a last
/// reload that failed fails the check. `None` for a proxy without a config file, or of a
/// version without reloads.
fn reload_check(admin: &str, text: &str) -> Option<Check> {
    let config: serde_json::Value = serde_json::from_str(text).ok()?;
    let reload = config.get("reload")?;
    let version = reload["version"].as_str().unwrap_or("?");
    let reloads = reload["reloads"].as_u64().unwrap_or(0);
    Some(match reload["lastResult"].as_str() {
        Some("error") => {
            let error = reload["lastError"]["message"].as_str().unwrap_or("?");
            let hint = if reload["lastError"]["needsRestart"] == true {
                "the proxy keeps its config in force; this change needs a restart"
            } else {
                "the proxy keeps its config in force; fix the file and it reloads"
            };
            Check::fail(
                "reload",
                admin,
                format!("config version {version}: the last reload failed: {error}"),
                hint,
            )
        }
        _ => Check::pass(
            "reload",
            admin,
            format!("config version {version}, {reloads} reload(s), none failing"),
        ),
    })
}

/// One check per namer on a proxy's `/namers.json`: a backend that is failing fails the
/// check, naming the backend, since when, and the last error. A control plane that is
/// unreachable while the proxy routes on the last state it sent is a warning: routing goes
/// on, unchanged, and the issue asks `weft check` to warn rather than fail.
fn namer_health_checks(admin: &str, text: &str) -> Vec<Check> {
    let Ok(serde_json::Value::Array(namers)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return vec![Check::fail(
            "namer",
            admin,
            "/namers.json is not a JSON array",
            "a proxy of another version? compare `weft version --proxy`",
        )];
    };
    namers
        .iter()
        .map(|n| {
            let prefix = n["prefix"].as_str().unwrap_or("?");
            let target = format!("{admin} {prefix}");
            let kind = n["kind"].as_str().unwrap_or("?");
            let backend = n["backend"].as_str().unwrap_or("?");
            let watched = n["watched"].as_u64().unwrap_or(0);
            let error = n["lastError"].as_str().unwrap_or("unknown error");
            let failing_since = n["failingSince"].as_f64();
            let since = failing_since
                .map(|t| format!("{}s", (unix_now() as f64 - t).max(0.0) as i64))
                .unwrap_or_else(|| "?".into());
            match n["state"].as_str() {
                Some("ok") => Check::pass(
                    "namer",
                    target,
                    format!("{kind} backend {backend}: ok, {watched} name(s) watched"),
                ),
                Some("pending") => Check::pass(
                    "namer",
                    target,
                    format!("{kind} backend {backend}: no answer needed yet"),
                ),
                Some("stale") if kind == "control" => Check::warn(
                    "namer",
                    target,
                    format!(
                        "control plane ({backend}) unreachable for {since}, routing on the last \
                         state since {}: {error}",
                        failing_since.map_or_else(|| "?".to_owned(), utc)
                    ),
                    "routing goes on unchanged, but dtab changes do not reach this proxy (see \
                     weft_namer_seconds_since_last_update); are the `weft control` instances up \
                     and reachable from the proxy?",
                ),
                Some("stale") => Check::fail(
                    "namer",
                    target,
                    format!("{kind} backend {backend} failing for {since}: {error}"),
                    "routing continues on the last good endpoints; is the backend up and \
                     reachable from the proxy?",
                ),
                _ => Check::fail(
                    "namer",
                    target,
                    format!("{kind} backend {backend} unreachable for {since}: {error}"),
                    "names served by this namer fail until the backend answers; is it up and \
                     reachable from the proxy?",
                ),
            }
        })
        .collect()
}

/// Unix seconds as UTC, `2026-12-06T23:01:02Z`.
fn utc(unix: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0.0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An admin error without its leading `admin ADDR: `: the check line names the admin.
fn without_admin<'a>(admin: &str, error: &'a str) -> &'a str {
    error
        .strip_prefix("admin ")
        .and_then(|e| e.strip_prefix(admin))
        .and_then(|e| e.strip_prefix(": "))
        .unwrap_or(error)
}

/// One line when every proxy read runs the same version; otherwise one failure per proxy
/// that runs an older version than the newest in the fleet, or whose version is unknown.
fn version_checks(admins: &[String], scrapes: &[Scrape]) -> Vec<Check> {
    let versions = version_cmd::versions(
        admins
            .iter()
            .zip(scrapes)
            .map(|(a, s)| (a.as_str(), s.page.as_ref().map(|p| p.version()))),
    );
    let Some((newest, _)) = versions.by_version.first() else {
        return Vec::new(); // no proxy read: the admin checks already failed
    };
    if versions.by_version.len() == 1 && newest != UNKNOWN {
        let all = match versions.by_version[0].1.len() {
            1 => "the 1 proxy read runs".to_owned(),
            n => format!("all {n} proxies read run"),
        };
        return vec![Check::pass(
            "version",
            "fleet",
            format!("{all} {newest} (this CLI: {CLI_VERSION})"),
        )];
    }
    let mut out = Vec::new();
    for (version, admins) in &versions.by_version {
        for admin in admins {
            if version == UNKNOWN {
                out.push(Check::fail(
                    "version",
                    admin.clone(),
                    "no weft_build_info{version} in /metrics",
                    "a proxy of another version? upgrade it",
                ));
            } else if version != newest {
                out.push(Check::fail(
                    "version",
                    admin.clone(),
                    format!("runs {version}, the newest in the fleet is {newest}"),
                    "upgrade it so the fleet runs one version",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_telemetry::scrape::Page;

    fn scrape(text: &str) -> Scrape {
        Scrape {
            at: tokio::time::Instant::now(),
            page: Ok(Page::parse(text)),
        }
    }

    #[test]
    fn versions_flag_every_older_and_unknown_proxy() {
        let admins: Vec<String> = ["a:1", "b:1", "c:1", "d:1"].map(String::from).into();
        let scrapes = [
            scrape("weft_build_info{version=\"0.2.0\"} 1"),
            scrape("weft_build_info{version=\"0.1.0\"} 1"),
            scrape("weft_process_threads 4"),
            Scrape {
                at: tokio::time::Instant::now(),
                page: Err("down".into()),
            },
        ];
        let checks = version_checks(&admins, &scrapes);
        let failed: Vec<(&str, bool)> = checks.iter().map(|c| (c.target.as_str(), c.ok)).collect();
        assert_eq!(failed, [("b:1", false), ("c:1", false)]);
        assert!(checks[0].detail.contains("newest in the fleet is 0.2.0"));

        let same = version_checks(&admins[..2], &[scrapes[0].clone(), scrapes[0].clone()]);
        assert_eq!(same.len(), 1);
        assert!(same[0].ok && same[0].detail.starts_with("all 2 proxies read run 0.2.0"));
    }

    #[test]
    fn a_failed_last_reload_fails_the_reload_check() {
        let ok =
            r#"{"routers": [], "reload": {"version": "00ab", "reloads": 2, "lastResult": "ok"}}"#;
        let check = reload_check("a:1", ok).expect("a reload check");
        assert!(check.line(false).starts_with("ok"), "{}", check.line(false));
        assert!(check.line(false).contains("00ab"));
        let failed = r#"{"reload": {"version": "00ab", "lastResult": "error",
            "lastError": {"message": "w.yaml:3:5: bad", "needsRestart": true}}}"#;
        let line = reload_check("a:1", failed)
            .expect("a reload check")
            .line(false);
        assert!(
            line.starts_with("FAIL")
                && line.contains("w.yaml:3:5: bad")
                && line.contains("restart"),
            "{line}"
        );
        assert!(reload_check("a:1", r#"{"routers": []}"#).is_none());
    }

    #[test]
    fn an_unreachable_control_plane_warns_and_a_failing_namer_fails() {
        let namers = r#"[
            {"prefix": "/$/control/outbound", "kind": "control", "backend": "127.0.0.1:4100",
             "state": "stale", "failingSince": 1796598062.5, "lastError": "connection refused"},
            {"prefix": "/#/k8s", "kind": "k8s", "backend": "https://k8s", "state": "stale",
             "failingSince": 1796598062.5, "lastError": "503"}
        ]"#;
        let checks = namer_health_checks("a:1", namers);
        assert_eq!(
            checks.iter().map(|c| (c.ok, c.warning)).collect::<Vec<_>>(),
            [(true, true), (false, false)]
        );
        let line = checks[0].line(false);
        assert!(
            line.starts_with("WARN namer a:1 /$/control/outbound: control plane (127.0.0.1:4100) unreachable for ")
                && line.contains("routing on the last state since 2026-12-06T23:01:02Z: connection refused (hint: "),
            "{line}"
        );
        assert!(checks[0].line(true).starts_with("⚠ namer"));
        assert_eq!(summary(&checks), "\n1 of 2 checks failed (1 warning)\n");
        assert_eq!(summary(&checks[..1]), "\nall 1 checks passed (1 warning)\n");
        let json = serde_json::to_value(&checks).expect("json");
        assert_eq!(
            (json[0]["ok"].as_bool(), json[0]["warning"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(json[1].get("warning"), None);
    }

    #[test]
    fn marks_for_terminals_and_pipes() {
        let ok = Check::pass("config", "w.yaml", "parses");
        let bad = Check::fail("admin", "127.0.0.1:1", "unreachable", "start it");
        assert_eq!(ok.line(true), "✔ config w.yaml: parses\n");
        assert_eq!(ok.line(false), "ok   config w.yaml: parses\n");
        assert_eq!(
            bad.line(false),
            "FAIL admin 127.0.0.1:1: unreachable (hint: start it)\n"
        );
        assert!(bad.line(true).starts_with("✘ admin"));
    }
}
