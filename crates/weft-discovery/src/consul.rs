//! The `consul` namer (placeholder until the implementation lands).

use weft_config::ConsulConfig;
use weft_naming::{Namer, Path, Resolution};

use crate::DiscoveryError;

/// `kind: consul`.
pub struct ConsulNamer {
    prefix: Path,
}

impl ConsulNamer {
    /// Builds the namer at `prefix`.
    ///
    /// # Errors
    /// None yet.
    pub fn new(_config: &ConsulConfig, prefix: &Path) -> Result<ConsulNamer, DiscoveryError> {
        Ok(ConsulNamer {
            prefix: prefix.clone(),
        })
    }
}

impl Namer for ConsulNamer {
    fn lookup(&self, _residual: &Path) -> tokio::sync::watch::Receiver<Resolution> {
        let msg = format!("{}: the consul namer is not built yet", self.prefix);
        tokio::sync::watch::channel(Resolution::Failed(msg.into())).1
    }
}
