//! Builds the naming interpreter from the configured namers and their transformers.

use std::sync::Arc;

use weft_config::{NamerConfig, NamerKind, TransformerConfig};
use weft_naming::{FsNamer, Interpreter, Namer, Transformed, Transformer};

/// Builds the naming interpreter of the configured namers (with their transformers).
///
/// One interpreter for the whole process: routers share namers, so one watched directory
/// serves every router that names it.
pub fn interpreter(namers: &[NamerConfig]) -> Interpreter {
    let built = namers
        .iter()
        .map(|nc| {
            let namer: Arc<dyn Namer> = match &nc.kind {
                NamerKind::Fs { root_dir } => {
                    Arc::new(FsNamer::with_prefix(root_dir.clone(), nc.prefix.clone()))
                }
            };
            let namer = if nc.transformers.is_empty() {
                namer
            } else {
                let transformers = nc
                    .transformers
                    .iter()
                    .map(|t| match t {
                        TransformerConfig::Port { port } => Transformer::Port(*port),
                        TransformerConfig::Localhost => Transformer::Localhost,
                    })
                    .collect();
                Arc::new(Transformed::new(namer, transformers))
            };
            (nc.prefix.clone(), namer)
        })
        .collect();
    Interpreter::new(built)
}
