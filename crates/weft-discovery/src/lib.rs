//! Namers that talk to a discovery backend, and the transformers that need one: DNS SRV
//! ([`dnssrv`]), Consul ([`consul`]), Kubernetes EndpointSlices and the per-node transformers
//! ([`k8s`]), Marathon ([`marathon`]).
//!
//! Each namer implements [`weft_naming::Namer`]: it yields live updates on watch channels,
//! keeps the last good endpoint set when its backend fails (retrying with jittered
//! [`Backoff`]), and reports its health through a [`weft_naming::NamerStatus`] (shown on the
//! admin server's `/namers.json`, in the `weft_namer_*` metrics and by `weft check`). One
//! watch runs per backend name, however many routers and bindings use it.
//!
//! This crate keeps the HTTP and Kubernetes clients out of the pure naming core
//! (`weft-naming`). [`interpreter`] builds the process's interpreter from the configuration.
//! User documentation: `docs/discovery.md`.

pub mod consul;
pub mod dnssrv;
#[doc(hidden)]
pub mod fuzz_support;
mod http;
pub mod k8s;
pub mod marathon;

use std::sync::Arc;

use weft_config::{NamerConfig, NamerKind, TransformerConfig};
use weft_naming::{FsNamer, Interpreter, Namer, Path, Transformed, Transformer};

pub use weft_naming::Backoff;

/// A namer or transformer that cannot be built from its configuration (a TLS file that does
/// not load, no Kubernetes configuration to be found, ...). The message names the namer's
/// prefix and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("namer {prefix}: {message}")]
pub struct DiscoveryError {
    /// The namer's prefix, e.g. `/#/consul`.
    pub prefix: String,
    /// What is wrong.
    pub message: String,
}

impl DiscoveryError {
    /// An error of the namer at `prefix`.
    pub fn new(prefix: &Path, message: impl Into<String>) -> DiscoveryError {
        DiscoveryError {
            prefix: prefix.to_string(),
            message: message.into(),
        }
    }
}

/// Builds the naming interpreter of the configured namers, each wrapped in its transformers.
///
/// One interpreter serves the whole process: routers share namers, so one watch per backend
/// name serves every router that routes to it. Must be called inside a tokio runtime when a
/// namer starts background work at once.
///
/// # Errors
/// A namer or transformer whose configuration cannot be used (see [`DiscoveryError`]).
pub fn interpreter(namers: &[NamerConfig]) -> Result<Interpreter, DiscoveryError> {
    let mut built = Vec::with_capacity(namers.len());
    for nc in namers {
        built.push((nc.prefix.clone(), namer(nc)?));
    }
    Ok(Interpreter::new(built))
}

/// One configured namer with its transformers applied in order.
fn namer(nc: &NamerConfig) -> Result<Arc<dyn Namer>, DiscoveryError> {
    let prefix = &nc.prefix;
    let mut namer: Arc<dyn Namer> = match &nc.kind {
        NamerKind::Fs { root_dir } => {
            Arc::new(FsNamer::with_prefix(root_dir.clone(), prefix.clone()))
        }
        NamerKind::DnsSrv(c) => Arc::new(dnssrv::DnsSrvNamer::new(c, prefix)?),
        NamerKind::Consul(c) => Arc::new(consul::ConsulNamer::new(c, prefix)?),
        NamerKind::K8s(c) => Arc::new(k8s::K8sNamer::new(c, prefix)?),
        NamerKind::Marathon(c) => Arc::new(marathon::MarathonNamer::new(c, prefix)?),
    };
    // Consecutive address rewrites share one `Transformed`; the Kubernetes transformers watch
    // the API themselves and wrap the namer on their own.
    let mut pure = Vec::new();
    for t in &nc.transformers {
        let next = match t {
            TransformerConfig::Port { port } => Transformer::Port(*port),
            TransformerConfig::Localhost => Transformer::Localhost,
            TransformerConfig::SpecificHost { host } => Transformer::SpecificHost(*host),
            TransformerConfig::Replace { path } => Transformer::Replace(path.clone()),
            TransformerConfig::Const { path } => Transformer::Const(path.clone()),
            TransformerConfig::K8sDaemonset(d) => {
                namer = flush(namer, &mut pure);
                let api = match &nc.kind {
                    NamerKind::K8s(k) if d.api == Default::default() => k.api.clone(),
                    _ => d.api.clone(),
                };
                namer = k8s::daemonset(namer, d, &api, prefix)?;
                continue;
            }
            TransformerConfig::K8sLocalnode(l) => {
                namer = flush(namer, &mut pure);
                namer = k8s::localnode(namer, l, prefix)?;
                continue;
            }
        };
        pure.push(next);
    }
    Ok(flush(namer, &mut pure))
}

fn flush(namer: Arc<dyn Namer>, pure: &mut Vec<Transformer>) -> Arc<dyn Namer> {
    if pure.is_empty() {
        namer
    } else {
        Arc::new(Transformed::new(namer, std::mem::take(pure)))
    }
}
