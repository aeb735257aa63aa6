//! What a proxy reads from the control plane and from its cache file (`weft-resolve`): a
//! `ResolveUpdate` off its resolution stream (first byte 0) or a whole cache file (first
//! byte 1), protobuf binary, decoded and converted to the binding state the proxy routes by.
//! A control plane that misbehaves, or a cache file damaged on disk, must be refused with an
//! error, never panic the proxy or recurse without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_resolve::fuzz_support::{cache_file, resolve_update};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, update)) => {
            let _ = resolve_update(update);
        }
        Some((_, file)) => {
            if let Ok((entries, valid)) = cache_file(file) {
                assert!(valid <= entries);
            }
        }
        None => {}
    }
});
