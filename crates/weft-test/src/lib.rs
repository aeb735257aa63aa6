//! weft-test (placeholder)
