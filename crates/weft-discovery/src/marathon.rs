//! The `marathon` namer (placeholder until the implementation lands).

use weft_config::MarathonConfig;
use weft_naming::{Namer, Path, Resolution};

use crate::DiscoveryError;

/// `kind: marathon`.
pub struct MarathonNamer {
    prefix: Path,
}

impl MarathonNamer {
    /// Builds the namer at `prefix`.
    ///
    /// # Errors
    /// None yet.
    pub fn new(_config: &MarathonConfig, prefix: &Path) -> Result<MarathonNamer, DiscoveryError> {
        Ok(MarathonNamer {
            prefix: prefix.clone(),
        })
    }
}

impl Namer for MarathonNamer {
    fn lookup(&self, _residual: &Path) -> tokio::sync::watch::Receiver<Resolution> {
        let msg = format!("{}: the marathon namer is not built yet", self.prefix);
        tokio::sync::watch::channel(Resolution::Failed(msg.into())).1
    }
}
