//! weft-naming (placeholder)
