//! Trace context extraction from request headers: W3C `traceparent`/`tracestate` and B3
//! (`b3`, `x-b3-*`). Input: `name: value` lines. Ids read are never zero, and a W3C parent
//! prints back as the header's own lower-case ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_telemetry::trace::{extract, Format};

fuzz_target!(|data: &[u8]| {
    let headers = weft_fuzz::header_lines(data);
    let incoming = extract(&headers);
    if let Some(p) = &incoming.parent {
        assert_ne!(p.trace_id.0, [0; 16]);
        assert_ne!(p.span_id.0, [0; 8]);
        let (t, s) = (p.trace_id.to_string(), p.span_id.to_string());
        assert_eq!((t.len(), s.len()), (32, 16));
        if incoming.format == Some(Format::W3c) {
            let tp = headers["traceparent"].to_str().expect("parsed, so text");
            assert!(tp.contains(&format!("-{t}-{s}-")), "{tp}");
        }
    }
    if incoming.format.is_none() {
        assert!(incoming.parent.is_none() && incoming.sampled.is_none());
    }
});
