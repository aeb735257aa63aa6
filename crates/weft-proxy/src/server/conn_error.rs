//! Why a client connection ended in an error, as the `reason` label of
//! `weft_connection_errors_total`: a small fixed set, read from hyper's error (HTTP/1.1) or
//! the h2 error beneath it (HTTP/2).

/// The reason an HTTP/1.1 (`h2` false) or HTTP/2 connection ended with `error`.
pub(super) fn reason(h2: bool, error: &hyper::Error) -> &'static str {
    if h2 {
        return h2_reason(error);
    }
    if error.is_parse_too_large() {
        "head-too-large"
    } else if error.is_parse() {
        "malformed-request"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_incomplete_message() {
        "incomplete-request"
    } else {
        "io"
    }
}

/// HTTP/2: by the GOAWAY error code (RFC 9113 section 7). `ENHANCE_YOUR_CALM` is what h2
/// answers floods with: rapid reset (CVE-2023-44487), a CONTINUATION flood (2024), a header
/// block that decodes too large (an HPACK bomb); its GOAWAY debug data (`too_many_resets`,
/// ...) tells the client which, but does not reach the server's error.
fn h2_reason(error: &hyper::Error) -> &'static str {
    let Some(h2) = std::error::Error::source(error).and_then(|s| s.downcast_ref::<h2::Error>())
    else {
        return if error.is_timeout() { "timeout" } else { "io" };
    };
    if h2.is_io() {
        return "io";
    }
    let Some(code) = h2.reason() else {
        return "io";
    };
    match code {
        h2::Reason::ENHANCE_YOUR_CALM => "h2-enhance-your-calm",
        h2::Reason::PROTOCOL_ERROR => "h2-protocol-error",
        h2::Reason::COMPRESSION_ERROR => "h2-compression-error",
        h2::Reason::FRAME_SIZE_ERROR => "h2-frame-size-error",
        h2::Reason::FLOW_CONTROL_ERROR => "h2-flow-control-error",
        _ => "h2-other",
    }
}
