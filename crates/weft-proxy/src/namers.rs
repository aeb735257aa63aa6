//! Builds the naming interpreter from the configured namers and their transformers
//! (`weft-discovery` owns the namers that talk to a backend).

use std::io;

use weft_config::NamerConfig;
use weft_naming::Interpreter;

/// Builds the naming interpreter of the configured namers (with their transformers).
///
/// One interpreter for the whole process: routers share namers, so one watched directory or
/// backend watch serves every router that names it. Must run inside a tokio runtime.
///
/// # Errors
/// `InvalidInput` when a namer cannot be built from its configuration (a TLS file that does
/// not load, no Kubernetes configuration found); the message names the namer's prefix.
pub fn interpreter(namers: &[NamerConfig]) -> io::Result<Interpreter> {
    weft_discovery::interpreter(namers)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}
