//! The `dnssrv` namer (placeholder until the implementation lands).

use weft_config::DnsSrvConfig;
use weft_naming::{Namer, Path, Resolution};

use crate::DiscoveryError;

/// `kind: dnssrv`.
pub struct DnsSrvNamer {
    prefix: Path,
}

impl DnsSrvNamer {
    /// Builds the namer at `prefix`.
    ///
    /// # Errors
    /// None yet.
    pub fn new(_config: &DnsSrvConfig, prefix: &Path) -> Result<DnsSrvNamer, DiscoveryError> {
        Ok(DnsSrvNamer {
            prefix: prefix.clone(),
        })
    }
}

impl Namer for DnsSrvNamer {
    fn lookup(&self, _residual: &Path) -> tokio::sync::watch::Receiver<Resolution> {
        let msg = format!("{}: the dnssrv namer is not built yet", self.prefix);
        tokio::sync::watch::channel(Resolution::Failed(msg.into())).1
    }
}
