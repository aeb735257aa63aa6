//! The `namerctl` verbs of `weft dtab` against a control plane's HTTP API: list, get,
//! create, update, delete, and delegate with `--control --namespace`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http::{Method, StatusCode};

use crate::admin_client::form_query;
use crate::control_client::{request, Answer, ControlOpts};
use crate::output::{self, Output};
use crate::table;

/// The `namerctl` verbs, subcommands of `weft dtab`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ControlVerb {
    /// List the namespaces of a control plane.
    List(ListArgs),
    /// Print a namespace's dtab and version.
    Get(GetArgs),
    /// Create a namespace with the dtab in FILE (or `-`: stdin); fails if it exists.
    Create(WriteArgs),
    /// Replace a namespace's dtab with the one in FILE (or `-`: stdin).
    Update(WriteArgs),
    /// Delete a namespace.
    Delete(DeleteArgs),
}

/// Arguments of `weft dtab list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    control: ControlOpts,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `weft dtab get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The namespace.
    namespace: String,
    #[command(flatten)]
    control: ControlOpts,
    /// Output format: text prints a `# version` line and the dtab, one dentry per line.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `weft dtab create` and `weft dtab update`.
#[derive(Args, Debug)]
pub(crate) struct WriteArgs {
    /// The namespace.
    namespace: String,
    /// The dtab file, or `-` for standard input (dtab text, e.g. `/svc => /#/fs;`).
    file: String,
    #[command(flatten)]
    control: ControlOpts,
    /// update only: write only if the stored version is still V (from `weft dtab get`);
    /// otherwise fail with "version mismatch" and change nothing.
    #[arg(long, value_name = "V")]
    if_version: Option<String>,
    /// update only: write nothing; show, for every name proxies route in the namespace right
    /// now, how it binds under the stored dtab and under this one.
    #[arg(long)]
    dry_run: bool,
    /// update only: write even if a name proxies route would then bind to nothing (neg),
    /// which is otherwise refused.
    #[arg(long)]
    force: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `weft dtab delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// The namespace.
    namespace: String,
    #[command(flatten)]
    control: ControlOpts,
    /// Delete only if the stored version is still V.
    #[arg(long, value_name = "V")]
    if_version: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(crate) fn run(verb: ControlVerb) -> ExitCode {
    let result = output::block_on(async move {
        match verb {
            ControlVerb::List(a) => list(a).await,
            ControlVerb::Get(a) => get(a).await,
            ControlVerb::Create(a) => write(a, Method::POST).await,
            ControlVerb::Update(a) => write(a, Method::PUT).await,
            ControlVerb::Delete(a) => delete(a).await,
        }
    });
    match result {
        Ok(Ok(text)) => output::exit(output::write_stdout(&text), true),
        Ok(Err(e)) => {
            output::problem(&format!("{e:#}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            output::problem(&format!("cannot start: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn dtabs_path(ns: &str) -> String {
    let mut p = String::from("/api/1/dtabs/");
    p.extend(form_urlencoded::byte_serialize(ns.as_bytes()));
    p
}

async fn list(args: ListArgs) -> anyhow::Result<String> {
    let answer = request(&args.control, Method::GET, "/api/1/dtabs", &[], None).await?;
    let answer = ok(answer, None)?;
    let names: Vec<String> = serde_json::from_str(&answer.body).context("the API's list")?;
    Ok(match args.output {
        Output::Json => output::json(&serde_json::json!(names), false),
        Output::Text => {
            let mut rows = vec![table::cells(&["NAMESPACE"])];
            rows.extend(names.into_iter().map(|n| vec![n]));
            table::align(&rows)
        }
    })
}

async fn get(args: GetArgs) -> anyhow::Result<String> {
    let ns = &args.namespace;
    let headers = [("accept", "application/dtab".to_owned())];
    let answer = request(&args.control, Method::GET, &dtabs_path(ns), &headers, None).await?;
    let answer = ok(answer, Some(ns))?;
    let version = answer.etag().unwrap_or_default();
    let dtab = weft_naming::Dtab::read(&answer.body).context("the API's dtab")?;
    Ok(match args.output {
        Output::Json => {
            let dentries: Vec<serde_json::Value> = dtab
                .dentries()
                .iter()
                .map(|d| serde_json::json!({"prefix": d.prefix.to_string(), "dst": d.dst.to_string()}))
                .collect();
            output::json(
                &serde_json::json!({"namespace": ns, "version": version, "dtab": dentries}),
                false,
            )
        }
        Output::Text => format!("# namespace {ns}, version {version}\n{dtab:#}"),
    })
}

async fn write(args: WriteArgs, method: Method) -> anyhow::Result<String> {
    let ns = &args.namespace;
    let creating = method == Method::POST;
    if creating && (args.if_version.is_some() || args.dry_run || args.force) {
        bail!("--if-version, --dry-run and --force apply to update only");
    }
    let text = read_input(&args.file)?;
    // Checked here too, so a typo is reported with its line and column before any request.
    weft_naming::Dtab::read(&text).with_context(|| format!("{}: invalid dtab", args.file))?;
    let mut headers = vec![("content-type", "application/dtab".to_owned())];
    if let Some(v) = &args.if_version {
        headers.push(("if-match", format!("\"{v}\"")));
    }
    let body = Some(Bytes::from(text));
    let mut path = dtabs_path(ns);
    if args.dry_run {
        path.push_str("?dryRun=true");
    } else if args.force {
        path.push_str("?force=true");
    }
    let answer = request(&args.control, method, &path, &headers, body).await?;
    let answer = ok(answer, Some(ns))?;
    if args.dry_run {
        return dry_run_report(&answer, args.output);
    }
    let version = answer.etag().unwrap_or_default();
    let verb = if creating { "created" } else { "updated" };
    Ok(match args.output {
        Output::Json => output::json(
            &serde_json::json!({"namespace": ns, "version": version, "result": verb}),
            false,
        ),
        Output::Text => format!("{verb} {ns} (version {version})\n"),
    })
}

async fn delete(args: DeleteArgs) -> anyhow::Result<String> {
    let ns = &args.namespace;
    let mut headers = Vec::new();
    if let Some(v) = &args.if_version {
        headers.push(("if-match", format!("\"{v}\"")));
    }
    let answer = request(
        &args.control,
        Method::DELETE,
        &dtabs_path(ns),
        &headers,
        None,
    )
    .await?;
    ok(answer, Some(ns))?;
    Ok(match args.output {
        Output::Json => output::json(
            &serde_json::json!({"namespace": ns, "result": "deleted"}),
            false,
        ),
        Output::Text => format!("deleted {ns}\n"),
    })
}

/// `weft dtab delegate --control ADDR --namespace NS PATH`.
pub(crate) async fn delegate(
    control: &str,
    ns: &str,
    path: &str,
    dtab: &str,
    output: Output,
) -> anyhow::Result<String> {
    let opts = ControlOpts {
        control: control.to_owned(),
        token_file: None,
    };
    let mut query = form_query(&[("path", path), ("dtab", dtab)]);
    if matches!(output, Output::Text) {
        query.push_str("&format=text");
    }
    let mut p = String::from("/api/1/delegate/");
    p.extend(form_urlencoded::byte_serialize(ns.as_bytes()));
    let answer = request(&opts, Method::GET, &format!("{p}{query}"), &[], None).await?;
    Ok(ok(answer, Some(ns))?.body)
}

fn read_input(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the dtab from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(PathBuf::from(file)).with_context(|| format!("cannot read {file}"))
}

/// The answer if it is a success; otherwise an error that says what happened in the
/// operator's terms.
/// The names proxies route and how the proposed dtab would change them: one line each,
/// changed ones marked `*`, as `old -> new`.
fn dry_run_report(answer: &Answer, format: Output) -> anyhow::Result<String> {
    let report: serde_json::Value =
        serde_json::from_str(&answer.body).context("the dry run answer is not JSON")?;
    if format == Output::Json {
        return Ok(output::json(&report, false));
    }
    let names = report["names"].as_array().cloned().unwrap_or_default();
    if names.is_empty() {
        return Ok("no proxy routes a name in this namespace right now
"
        .into());
    }
    let mut out = String::new();
    let mut changed = 0;
    for n in &names {
        let mark = if n["changed"] == true {
            changed += 1;
            "*"
        } else {
            " "
        };
        let local = n["localDtab"].as_str().unwrap_or("");
        let local = if local.is_empty() {
            String::new()
        } else {
            format!(" (local {local})")
        };
        out.push_str(&format!(
            "{mark} {}{local} [{} proxies]: {} -> {}
",
            n["path"].as_str().unwrap_or("?"),
            n["proxies"],
            binding_summary(&n["old"]),
            binding_summary(&n["new"]),
        ));
    }
    out.push_str(&format!(
        "{changed} of {} routed names change binding; nothing was written
",
        names.len()
    ));
    Ok(out)
}

/// `bound /#/fs/v1 (90%), /#/fs/v2 (10%)`, or the state (`neg`, `error: ...`).
fn binding_summary(b: &serde_json::Value) -> String {
    let state = b["state"].as_str().unwrap_or("?");
    match state {
        "bound" => {
            let names: Vec<String> = b["names"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let share = n["weight"].as_f64().unwrap_or(0.0) * 100.0;
                    format!("{} ({share:.0}%)", n["id"].as_str().unwrap_or("?"))
                })
                .collect();
            names.join(", ")
        }
        "error" => format!("error: {}", b["error"].as_str().unwrap_or("")),
        other => other.to_owned(),
    }
}

fn ok(answer: Answer, ns: Option<&str>) -> anyhow::Result<Answer> {
    if answer.status.is_success() {
        return Ok(answer);
    }
    let ns = ns.unwrap_or("");
    let reason = answer.reason().to_owned();
    match answer.status {
        StatusCode::PRECONDITION_FAILED => bail!(
            "version mismatch: the dtab of {ns} changed since you read it (now version {}); \
             get it again and retry",
            answer.etag().unwrap_or_else(|| "unknown".into())
        ),
        StatusCode::NOT_FOUND => bail!("no such namespace: {ns} ({reason})"),
        StatusCode::CONFLICT => bail!("namespace {ns} already exists; use update"),
        StatusCode::UNAUTHORIZED => {
            bail!("not authorized: {reason} (give --token-file or WEFT_CONTROL_TOKEN_FILE)")
        }
        StatusCode::FORBIDDEN => bail!("forbidden: {reason}"),
        StatusCode::BAD_REQUEST => bail!("refused: {reason}"),
        StatusCode::PAYLOAD_TOO_LARGE => bail!("refused: {reason}"),
        StatusCode::UNPROCESSABLE_ENTITY => bail!("refused: {reason} (--force)"),
        StatusCode::SERVICE_UNAVAILABLE => bail!("control plane unavailable: {reason}"),
        status => bail!("control plane answered {status}: {reason}"),
    }
}
