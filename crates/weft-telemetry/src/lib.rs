//! weft-telemetry (placeholder)
