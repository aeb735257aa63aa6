//! The service file parser of the `fs` namer (`host port [* weight]` lines): any file in the
//! watched directory. Addresses read print back to lines that read to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_naming::FsNamer;

fuzz_target!(|data: &[u8]| {
    let Ok(addrs) = FsNamer::parse_service_file(data) else {
        return;
    };
    let text: String = addrs
        .iter()
        .map(|a| format!("{} {} * {}\n", a.addr.ip(), a.addr.port(), a.weight))
        .collect();
    let back = FsNamer::parse_service_file(text.as_bytes()).expect("printed lines parse");
    assert_eq!(back, addrs, "{text}");
    assert!(addrs
        .iter()
        .all(|a| a.weight.is_finite() && a.weight >= 0.0));
});
