//! Orchestration of `weft demo`: start the mesh, run the load, print a table every interval,
//! and on Ctrl-C / SIGTERM / `--duration` stop the load, print the summary and stop every
//! child.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use super::dns::DemoDns;
use super::http::{self as client, Client};
use super::layout::Layout;
use super::load::Load;
use super::procs::Procs;
use super::start::{self, WorkDir};
use super::stats::{self, Snapshot};
use super::{table, DemoArgs, Discovery};
use weft_telemetry::scrape as prom;

/// How long children get to exit after SIGTERM before SIGKILL (sidecars drain up to 5s).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// How long the load generator waits for its last requests.
const LOAD_GRACE: Duration = Duration::from_secs(6);
/// Per-scrape deadline.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn run(args: DemoArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(demo(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weft demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why the main loop ended.
enum Ending {
    /// `--duration` elapsed.
    Done,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// stdout went away (`weft demo | head`): stop quietly.
    OutputClosed,
    /// A child exited by itself.
    ChildDied(String),
}

async fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    // Installed first so Ctrl-C during start-up still stops the children.
    let mut signals = Signals::new()?;
    let exe = std::env::current_exe().context("cannot locate the weft binary")?;
    let layout = Layout::new(args.ip_base, args.slow_ms);
    start::preflight(&layout)?;
    let dir = WorkDir::create()?;
    let mut procs = Procs::default();
    let client = client::client();
    let mut dns = match args.discovery {
        Discovery::Fs => None,
        Discovery::Dns => {
            let held_back = layout.joiner().map(|i| i.name.as_str());
            Some(DemoDns::start(layout.dns, &layout, held_back).await?)
        }
    };
    let dns_addr = dns.as_ref().map(|_| layout.dns);
    let started = tokio::select! {
        r = start::start(&layout, &exe, &dir, &mut procs, &client, dns_addr) => r.map(|()| true),
        _ = signals.recv() => Ok(false),
    };
    let result = match started {
        Ok(true) => {
            session(
                &args,
                &layout,
                &client,
                &mut procs,
                &mut signals,
                dns.as_mut(),
            )
            .await
        }
        Ok(false) => {
            eprintln!("weft demo: interrupted during start-up");
            Ok(false)
        }
        Err(e) => Err(e),
    };
    let killed = tokio::select! {
        k = procs.stop(STOP_GRACE) => k,
        _ = signals.recv() => {
            eprintln!("weft demo: second signal: killing every process");
            Vec::new()
        }
    };
    // kill_on_drop: SIGKILL to any child still running.
    drop(procs);
    if !killed.is_empty() {
        eprintln!(
            "weft demo: killed after {STOP_GRACE:?} without exiting: {}",
            killed.join(", ")
        );
    }
    let ok = match result {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("weft demo: {e:#}");
            false
        }
    };
    if ok {
        dir.remove();
    } else {
        // Keep the logs of a failed run for a post-mortem.
        eprintln!("weft demo: logs kept in {}", dir.logs().display());
    }
    Ok(ok)
}

/// The mesh is up: load, tables, and the summary. `Ok(true)` when the mesh carried the load.
async fn session(
    args: &DemoArgs,
    layout: &Layout,
    client: &Client,
    procs: &mut Procs,
    signals: &mut Signals,
    mut dns: Option<&mut DemoDns>,
) -> anyhow::Result<bool> {
    let entry = layout.entry().context("the layout has no web instance")?;
    let mut out = Output::new();
    let intro = format!(
        "weft demo: web -> converter -> rates (rates-3 answers after {}ms), each with a \
         weft sidecar\nload: {} rps to web through {} (Host: web)\n\n{}",
        args.slow_ms,
        args.rps,
        entry.inbound(),
        table::addresses(layout)
    );
    let _ = out.print(&intro);
    let baseline = scrape(client, layout).await;
    let load = Load::start(
        client.clone(),
        entry.inbound(),
        "web",
        args.rps,
        args.concurrency,
    );
    let started = Instant::now();
    // A duration too large to add is as good as forever.
    let deadline = args.duration.and_then(|d| started.checked_add(d));
    let mut ticks = tokio::time::interval_at(started + args.interval, args.interval);
    let mut prev = baseline.clone();
    // With DNS discovery, the held-back replica joins once, after `--join-after`.
    let mut join_at = dns.as_ref().map(|_| started + args.join_after);
    let mut joined: Option<String> = None;
    let ending = loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = sleep_until(join_at) => {
                join_at = None;
                if let (Some(dns), Some(inst)) = (dns.as_deref_mut(), layout.joiner()) {
                    dns.add(inst).await?;
                    joined = Some(format!(
                        "{} joined at {:.0}s: its SRV record was added to DNS, the sidecars \
                         picked it up on their next re-resolution\n",
                        inst.name,
                        started.elapsed().as_secs_f64()
                    ));
                }
                continue;
            }
            _ = sleep_until(deadline) => break Ending::Done,
            _ = signals.recv() => break Ending::Interrupted,
        }
        if let Some(story) = procs.exited().await {
            break Ending::ChildDied(story);
        }
        let cur = scrape(client, layout).await;
        let report = stats::report(layout, &prev, &cur);
        let mut frame = String::new();
        if out.tty {
            // The screen was cleared: repeat where everything listens.
            frame.push_str(&intro);
            frame.push('\n');
        }
        frame.push_str(&format!(
            "--- {:.0}s elapsed, last {:.1}s ---\n",
            started.elapsed().as_secs_f64(),
            report.secs
        ));
        if let Some(line) = &joined {
            frame.push_str(line);
        }
        frame.push_str(&table::report(&report, &load.counts()));
        if out.frame(&frame).is_err() {
            break Ending::OutputClosed;
        }
        prev = cur;
    };
    let counts = load.stop(LOAD_GRACE).await;
    if let Ending::OutputClosed = ending {
        return Ok(true);
    }
    let last = scrape(client, layout).await;
    let report = stats::report(layout, &baseline, &last);
    let summary = format!(
        "\n=== summary: {:.1}s ===\n{}",
        report.secs,
        table::report(&report, &counts)
    );
    let _ = out.print(&summary);
    if let Ending::ChildDied(story) = ending {
        eprintln!("weft demo: a process of the mesh died: {story}");
        return Ok(false);
    }
    match stats::verdict(&report, &counts) {
        Ok(line) => {
            let _ = out.print(&format!("{line}\n"));
            Ok(true)
        }
        // An interrupted run that carried little traffic is not a failure of the demo.
        Err(_) if matches!(ending, Ending::Interrupted) => Ok(true),
        Err(why) => {
            eprintln!("weft demo: {why}");
            Ok(false)
        }
    }
}

/// Scrapes every sidecar's `/metrics` in parallel.
async fn scrape(client: &Client, layout: &Layout) -> Snapshot {
    let tasks: Vec<_> = layout
        .instances
        .iter()
        .map(|inst| {
            let (client, admin) = (client.clone(), inst.admin());
            tokio::spawn(async move {
                let host = admin.to_string();
                let r = client::get(&client, admin, &host, "/metrics", SCRAPE_TIMEOUT)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                if !r.status.is_success() {
                    return Err(format!("GET http://{admin}/metrics: {}", r.status));
                }
                Ok(prom::parse(&String::from_utf8_lossy(&r.body)))
            })
        })
        .collect();
    let mut scrapes = Vec::with_capacity(tasks.len());
    for t in tasks {
        scrapes.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    Snapshot {
        at: Instant::now(),
        scrapes,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// SIGINT, SIGTERM and SIGHUP (terminal closed) all stop the demo.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let install = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// stdout, cleared between frames only when it is a terminal.
struct Output {
    tty: bool,
}

impl Output {
    fn new() -> Output {
        Output {
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn print(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// One table: on a terminal, replaces the screen; otherwise appends after a blank line.
    fn frame(&mut self, text: &str) -> std::io::Result<()> {
        if self.tty {
            self.print(&format!("\x1b[2J\x1b[H{text}"))
        } else {
            self.print(&format!("\n{text}"))
        }
    }
}
