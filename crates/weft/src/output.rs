//! What the CLI's data commands share about output: the `-o text|json` choice, writing to a
//! stdout that may have been closed (`weft stat | head`), and their exit codes.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::ValueEnum;

/// Output formats of commands that print data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned text for people.
    Text,
    /// JSON for programs.
    Json,
}

/// Writes `text` to stdout and flushes. An error (most often `BrokenPipe`: the reader went
/// away) is returned so the caller stops writing; [`exit`] turns it into a quiet exit.
pub(crate) fn write_stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one problem line (`weft: ...`) to stderr; a closed stderr is ignored.
pub(crate) fn problem(line: &str) {
    let _ = writeln!(io::stderr().lock(), "weft: {line}");
}

/// Whether stdout is a terminal (marks, screen clearing) rather than a pipe or file.
pub(crate) fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// `text` as a JSON document followed by a newline (pretty unless `compact`).
pub(crate) fn json(value: &serde_json::Value, compact: bool) -> String {
    let mut s = if compact {
        value.to_string()
    } else {
        // A `Value` has string keys only, so it always serializes.
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    s.push('\n');
    s
}

/// The exit code of a data command: success when `ok`; a stdout closed by its reader is
/// not an error of the command (the reader had seen enough), any other write error is.
pub(crate) fn exit(written: io::Result<()>, ok: bool) -> ExitCode {
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            problem(&format!("writing to stdout: {e}"));
            ExitCode::FAILURE
        }
        _ if ok => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Runs `fut` on a single-threaded runtime: the CLI commands talk to a few admin servers
/// and need no more.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}
