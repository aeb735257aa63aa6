//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`): not part of
//! weft-resolve's API (hidden from its docs), only a way to feed untrusted bytes to what a
//! proxy reads from the control plane and from its cache file, exactly as the proxy reads
//! them.

use prost::Message;

use crate::{cache, convert, proto};

/// One `weft.resolve.v1.ResolveUpdate` (protobuf binary) as a proxy receives it on its
/// resolution stream: decoded, then turned into the binding state the proxy would route by.
/// Returns that state's `Debug` text.
///
/// # Errors
/// Bytes that do not decode, or an update that describes no valid tree (no state, a bad
/// path or address, nesting deeper than 128), as a message.
pub fn resolve_update(bytes: &[u8]) -> Result<String, String> {
    let update = proto::ResolveUpdate::decode(bytes).map_err(|e| e.to_string())?;
    convert::state(&update).map(|state| format!("{state:?}"))
}

/// A proxy's cache file (`weft.resolve.v1.CacheFile`, protobuf binary) for namespace
/// `default`: how many entries it holds, and how many of their updates convert to a
/// binding state as they would when the proxy starts from the file.
///
/// # Errors
/// Bytes that do not decode, or a file for another namespace, as a message.
pub fn cache_file(bytes: &[u8]) -> Result<(usize, usize), String> {
    let loaded = cache::decode(bytes, "default").map_err(|e| e.to_string())?;
    let valid = loaded
        .entries
        .values()
        .filter(|u| convert::state(u).is_ok())
        .count();
    Ok((loaded.entries.len(), valid))
}
