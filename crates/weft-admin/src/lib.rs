//! weft-admin (placeholder)
