//! Logging setup for the binary: `tracing` to stderr, filtered by `WEFT_LOG` (a
//! `tracing_subscriber::EnvFilter` directive such as `info` or `weft_proxy=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default` applies when `WEFT_LOG` is unset or invalid.
pub(crate) fn init(default: &str) {
    let filter = EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for people; log files and test captures get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
