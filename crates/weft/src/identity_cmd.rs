//! `weft identity`: the built-in certificate authority (init, rotate-issuer, serve), the
//! proxy's side of it (request, optionally renewing), and `show` to inspect identity files.
//! See docs/identity.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use weft_tls::{ca, Identity, IdentityConfig};

use crate::output::{self, Output};

/// `weft identity` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum IdentityCommand {
    /// Create a trust anchor (self-signed root, 1 year) and an issuer (90 days) in a directory.
    Init(InitArgs),
    /// Replace the issuer with a new one signed by the same anchor (needs the anchor key).
    RotateIssuer(DirArgs),
    /// Serve certificates over HTTPS: POST /v1/certificate with {csr, spiffeId, token}.
    Serve(ServeArgs),
    /// Get a certificate from the CA and write key and chain; with --renew keep renewing at
    /// about two thirds of each certificate's lifetime.
    Request(RequestArgs),
    /// Validate identity files as the proxy would, and print the identity and its expiry.
    Show(ShowArgs),
}

/// Arguments of `weft identity init`.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Directory for the CA files (created; existing CA files are never overwritten).
    #[arg(long, default_value = "weft-ca")]
    dir: PathBuf,
    /// Trust domain: the host part of every SPIFFE ID this CA issues.
    #[arg(long, default_value = "weft.local")]
    trust_domain: String,
}

/// A CA directory.
#[derive(Args, Debug)]
pub(crate) struct DirArgs {
    /// The CA directory made by `weft identity init`.
    #[arg(long, default_value = "weft-ca")]
    dir: PathBuf,
}

/// Arguments of `weft identity serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The CA directory made by `weft identity init`.
    #[arg(long, default_value = "weft-ca")]
    dir: PathBuf,
    /// Address to listen on (use 0.0.0.0:4190 to serve other hosts).
    #[arg(long, default_value = "127.0.0.1:4190")]
    listen: SocketAddr,
    /// Bootstrap tokens, one per line: `TOKEN` or `TOKEN SPIFFE-ID` (only that identity).
    #[arg(long)]
    token_file: PathBuf,
    /// Lifetime of issued certificates.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// Names (DNS or IP) of the CA's own serving certificate; repeatable. Default:
    /// localhost, 127.0.0.1 and `identity.<trust-domain>`.
    #[arg(long = "name")]
    names: Vec<String>,
}

/// Arguments of `weft identity request`.
#[derive(Args, Debug)]
pub(crate) struct RequestArgs {
    /// The CA's URL.
    #[arg(long, default_value = "https://127.0.0.1:4190")]
    url: String,
    /// PEM trust anchors that the CA's certificate chains to (the trust bundle).
    #[arg(long)]
    ca_bundle: PathBuf,
    /// File holding the bootstrap token (first line).
    #[arg(long)]
    token_file: PathBuf,
    /// The SPIFFE ID to request, e.g. spiffe://weft.local/ns/default/sa/web.
    #[arg(long)]
    spiffe_id: String,
    /// Where to write the certificate chain.
    #[arg(long)]
    cert: PathBuf,
    /// Where to write the private key (mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Keep running and renew at about two thirds of each certificate's lifetime (jittered).
    #[arg(long)]
    renew: bool,
}

/// Arguments of `weft identity show`.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// Certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Trust bundle (PEM).
    #[arg(long)]
    trust_bundle: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs `weft identity ...`. Exit codes: 0 success, 1 failure, 2 a runtime could not start.
pub(crate) fn run(cmd: IdentityCommand) -> ExitCode {
    let _ = crate::logging::init("info");
    match cmd {
        IdentityCommand::Init(a) => done(ca::init(&a.dir, &a.trust_domain).map(|()| {
            format!(
                "created a trust anchor and an issuer for {} in {}\ntrust bundle: {}\n",
                a.trust_domain,
                a.dir.display(),
                a.dir.join(ca::ANCHOR_CERT).display()
            )
        })),
        IdentityCommand::RotateIssuer(a) => done(
            ca::rotate_issuer(&a.dir)
                .map(|()| format!("new issuer in {}\n", a.dir.join(ca::ISSUER_CERT).display())),
        ),
        IdentityCommand::Serve(a) => on_runtime(serve(a)),
        IdentityCommand::Request(a) => on_runtime(request(a)),
        IdentityCommand::Show(a) => show(a),
    }
}

async fn serve(a: ServeArgs) -> Result<String, String> {
    let mut names = a.names;
    if names.is_empty() {
        let td = std::fs::read_to_string(a.dir.join(ca::TRUST_DOMAIN))
            .map_err(|e| format!("{}: {e}", a.dir.join(ca::TRUST_DOMAIN).display()))?;
        names = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            format!("identity.{}", td.trim()),
        ];
    }
    let server = ca::serve(ca::ServeConfig {
        issuer_dir: a.dir,
        addr: a.listen,
        token_file: a.token_file,
        lifetime: a.lifetime,
        server_names: names,
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "weft identity CA listening on https://{}",
        server.local_addr()
    );
    tokio::select! {
        _ = server.wait() => Err("the CA server stopped".into()),
        _ = tokio::signal::ctrl_c() => Ok(String::new()),
    }
}

async fn request(a: RequestArgs) -> Result<String, String> {
    let cfg = ca::RenewConfig {
        url: a.url,
        ca_bundle: a.ca_bundle,
        token_file: a.token_file,
        spiffe_id: a.spiffe_id,
        cert: a.cert,
        key: a.key,
    };
    if a.renew {
        tokio::select! {
            _ = ca::renew_loop(cfg) => Ok(String::new()),
            _ = tokio::signal::ctrl_c() => Ok(String::new()),
        }
    } else {
        let (_, not_after) = ca::request_to_files(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "wrote {} and {} for {}, valid until {}\n",
            cfg.cert.display(),
            cfg.key.display(),
            cfg.spiffe_id,
            rfc3339(not_after)
        ))
    }
}

fn show(a: ShowArgs) -> ExitCode {
    let cfg = IdentityConfig {
        cert: a.cert,
        key: a.key,
        trust_bundle: a.trust_bundle,
        federation: Vec::new(),
    };
    let id = match Identity::load(&cfg) {
        Ok(id) => id,
        Err(e) => {
            output::problem(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let text = match a.output {
        Output::Json => output::json(
            &json!({
                "spiffeId": id.spiffe_id(),
                "serverName": id.server_name(),
                "serial": id.serial(),
                "notAfter": id.not_after_unix(),
            }),
            false,
        ),
        Output::Text => format!(
            "SPIFFE ID    {}\nSERVER NAME  {}\nSERIAL       {}\nNOT AFTER    {}\n",
            id.spiffe_id(),
            id.server_name().unwrap_or_else(|| "-".into()),
            id.serial(),
            rfc3339(id.not_after_unix())
        ),
    };
    output::exit(output::write_stdout(&text), true)
}

fn on_runtime(fut: impl std::future::Future<Output = Result<String, String>>) -> ExitCode {
    match output::block_on(fut) {
        Ok(r) => done(r),
        Err(e) => {
            output::problem(&format!("cannot start a runtime: {e}"));
            ExitCode::from(2)
        }
    }
}

fn done<E: std::fmt::Display>(r: Result<String, E>) -> ExitCode {
    match r {
        Ok(text) => output::exit(output::write_stdout(&text), true),
        Err(e) => {
            output::problem(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
