//! `weft dtab`: routing inspection from a config file, a running proxy or a control plane,
//! and the `namerctl` verbs on a control plane's dtabs (list, get, create, update, delete).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use weft_config::Config;
use weft_naming::{Dtab, Path};

use crate::admin_client::form_query;
use crate::output::Output;

/// `weft dtab` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum DtabCommand {
    /// Print the delegation tree of a path: each dentry that fired, the residual, the outcome.
    Delegate(DelegateArgs),
    /// The namerd verbs on a control plane's dtabs.
    #[command(flatten)]
    Control(crate::dtab_control::ControlVerb),
}

/// Arguments of `weft dtab delegate`.
#[derive(Args, Debug)]
pub(crate) struct DelegateArgs {
    /// The logical name to explain, e.g. /svc/books.
    path: String,
    /// Explain with this config file's namers and router dtab (offline).
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["admin", "control"])]
    config: Option<PathBuf>,
    /// Ask a running proxy's admin server instead, e.g. 127.0.0.1:9990.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "control")]
    admin: Option<String>,
    /// Ask a control plane's API instead (with --namespace), e.g. 127.0.0.1:4180: its
    /// namers and the namespace's stored dtab.
    #[arg(long, value_name = "ADDR", requires = "namespace")]
    control: Option<String>,
    /// The control plane namespace whose dtab applies (with --control).
    #[arg(long, value_name = "NS", requires = "control")]
    namespace: Option<String>,
    /// The router whose dtab applies (default: the only or first router).
    #[arg(short, long)]
    router: Option<String>,
    /// Extra dentries appended last, as an `l5d-dtab` header would add.
    #[arg(long, default_value = "")]
    dtab: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(crate) fn run(cmd: DtabCommand) -> ExitCode {
    let _ = crate::logging::init("warn");
    let args = match cmd {
        DtabCommand::Delegate(args) => args,
        DtabCommand::Control(verb) => return crate::dtab_control::run(verb),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(delegate(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn delegate(args: DelegateArgs) -> anyhow::Result<String> {
    let path = Path::read(&args.path).with_context(|| format!("path {:?}", args.path))?;
    let local = Dtab::read(&args.dtab).context("--dtab")?;
    if let (Some(control), Some(ns)) = (&args.control, &args.namespace) {
        return crate::dtab_control::delegate(control, ns, &args.path, &args.dtab, args.output)
            .await;
    }
    if let Some(admin) = &args.admin {
        let mut query = form_query(&[("path", &args.path), ("dtab", &args.dtab)]);
        if let Some(r) = &args.router {
            query.push_str(&form_query(&[("router", r)]).replacen('?', "&", 1));
        }
        if matches!(args.output, Output::Text) {
            query.push_str("&format=text");
        }
        return crate::admin_client::get(admin, &format!("/delegator.json{query}")).await;
    }
    let config = match &args.config {
        Some(file) => Config::load(file)?,
        None => Config::embedded_default(),
    };
    let router = match &args.router {
        Some(label) => config.routers.iter().find(|r| &r.label == label),
        None => config.routers.first(),
    }
    .ok_or_else(|| anyhow!("no such router in the config"))?;
    let interpreter = weft_proxy::interpreter(&config.namers)?;
    let dtab = router.dtab.concat(&local);
    let tree = interpreter
        .delegate(&dtab, &path, Duration::from_secs(5))
        .await;
    Ok(match args.output {
        Output::Text => tree.to_string(),
        Output::Json => serde_json::to_string_pretty(&tree)?,
    })
}
