//! The Marathon namer's server-sent events parser (`/v2/events`), on any stream. The first
//! byte chooses where the rest is cut into chunks: the events parsed do not depend on how
//! the stream arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_discovery::fuzz_support::marathon_events;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = marathon_events(&[stream]);
    let size = usize::from(cut).max(1);
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    let chunked = marathon_events(&chunks);
    // A BOM split over chunks is not skipped (as the parser says), so compare only streams
    // that do not start with one.
    if !stream.starts_with(b"\xEF") {
        assert_eq!(whole, chunked);
    }
    let bytes: Vec<&[u8]> = stream.iter().map(std::slice::from_ref).collect();
    let _ = marathon_events(&bytes);
});
