//! The `k8s` namer (placeholder until the implementation lands).

use weft_config::K8sConfig;
use weft_naming::{Namer, Path, Resolution};

use crate::DiscoveryError;

/// `kind: k8s`.
pub struct K8sNamer {
    prefix: Path,
}

impl K8sNamer {
    /// Builds the namer at `prefix`.
    ///
    /// # Errors
    /// None yet.
    pub fn new(_config: &K8sConfig, prefix: &Path) -> Result<K8sNamer, DiscoveryError> {
        Ok(K8sNamer {
            prefix: prefix.clone(),
        })
    }
}

impl Namer for K8sNamer {
    fn lookup(&self, _residual: &Path) -> tokio::sync::watch::Receiver<Resolution> {
        let msg = format!("{}: the k8s namer is not built yet", self.prefix);
        tokio::sync::watch::channel(Resolution::Failed(msg.into())).1
    }
}

/// `kind: k8s.daemonset` around `inner`.
///
/// # Errors
/// None yet.
pub fn daemonset(
    inner: std::sync::Arc<dyn Namer>,
    _config: &weft_config::DaemonsetConfig,
    _api: &weft_config::K8sApi,
    _prefix: &Path,
) -> Result<std::sync::Arc<dyn Namer>, DiscoveryError> {
    Ok(inner)
}

/// `kind: k8s.localnode` around `inner`.
///
/// # Errors
/// None yet.
pub fn localnode(
    inner: std::sync::Arc<dyn Namer>,
    _config: &weft_config::LocalnodeConfig,
    _prefix: &Path,
) -> Result<std::sync::Arc<dyn Namer>, DiscoveryError> {
    Ok(inner)
}
