//! weft-proxy (placeholder)
