//! Logging setup for the binary: `tracing` to stderr, filtered by `WEFT_LOG` (a
//! `tracing_subscriber::EnvFilter` directive such as `info` or `weft_proxy=debug`), and
//! changeable at run time through the admin server (`PUT /logging?level=...`).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

/// Applies a new filter directive at run time; the error text names what did not parse.
pub(crate) type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Installs the global subscriber; `default` applies when `WEFT_LOG` is unset or invalid.
/// Returns the directive in force and a control to change it.
pub(crate) fn init(default: &str) -> (String, LogControl) {
    let directive = std::env::var("WEFT_LOG")
        .ok()
        .filter(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| default.to_string());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&directive));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only for people; log files and test captures get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    let control: LogControl = Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    (directive, control)
}
