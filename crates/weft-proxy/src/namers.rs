//! Builds the naming interpreters: the process's, from the configured namers and their
//! transformers (`weft-discovery` owns the namers that talk to a backend), and a router's
//! own when it binds through the control plane (`weft-resolve`).

use std::io;

use weft_config::{InterpreterConfig, NamerConfig, RouterConfig};
use weft_naming::{Interpreter, Path};
use weft_resolve::{ControlInterpreter, ControlSettings};

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

/// The interpreter router `rc` binds with: `local` (the process's namers) for
/// `interpreter: {kind: default}`, or a [`ControlInterpreter`] of its own for
/// `kind: control`, shown as `/$/control/<label>` on `/namers.json`. Must run inside a tokio
/// runtime.
///
/// # Errors
/// `InvalidInput` when the control settings are unusable (no address).
pub(crate) fn router_interpreter(
    rc: &RouterConfig,
    local: &Interpreter,
) -> io::Result<Interpreter> {
    let InterpreterConfig::Control(ctl) = &rc.interpreter else {
        return Ok(local.clone());
    };
    let mut settings = ControlSettings::new(ctl.addresses.clone(), ctl.namespace.clone());
    settings.cache_file = ctl.cache_file.clone();
    settings.prefix = Path::from_labels(["$", "control", rc.label.as_str()]);
    let control = ControlInterpreter::new(settings)
        .map_err(|e| io::Error::new(e.kind(), format!("router {}: {e}", rc.label)))?;
    tracing::info!(router = %rc.label, namespace = %ctl.namespace, addresses = ?ctl.addresses, "binding names through the control plane");
    Ok(control.interpreter())
}
