//! The router's handling of per-request dtab headers (`l5d-dtab`, `l5d-ctx-dtab`): any
//! request head. Input: `name: value` lines. A dtab the router accepts is the one it forwards
//! upstream as `l5d-ctx-dtab` (parsed back, equal), and `l5d-dtab` never goes upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_naming::Dtab;

fuzz_target!(|data: &[u8]| {
    let headers = weft_fuzz::header_lines(data);
    let Ok((local, upstream)) = weft_proxy::fuzz_support::request_dtab(headers) else {
        return;
    };
    assert!(upstream.get("l5d-dtab").is_none());
    match upstream.get("l5d-ctx-dtab") {
        None => assert!(local.is_empty(), "{local}"),
        Some(v) => {
            let text = v.to_str().expect("a printed dtab is ASCII");
            assert_eq!(Dtab::read(text).as_ref(), Ok(&local), "{text}");
        }
    }
});
