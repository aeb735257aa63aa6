//! Protocol detection on an accepted connection (TLS, HTTP/2 preface, HTTP/1, else TCP) over
//! any first bytes. A verdict, once given, does not change when no more bytes come, and a
//! TLS handshake record type is always TLS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::fuzz_support::detect_protocol;

fuzz_target!(|data: &[u8]| {
    let (now, at_end) = detect_protocol(data);
    if let Some(v) = now {
        assert_eq!(v, at_end);
    }
    if data.first() == Some(&0x16) {
        assert_eq!(now, Some("tls"));
    }
    // Every prefix is either undecided or decided the same way as far as it goes: bytes read
    // later never turn a verdict already given into another one.
    for n in 0..data.len().min(32) {
        if let (Some(early), Some(late)) = (detect_protocol(&data[..n]).0, now) {
            assert_eq!(early, late, "after {n} bytes");
        }
    }
});
