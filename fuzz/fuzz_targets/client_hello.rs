//! The ClientHello inspector that tells mesh TLS from application TLS on inbound
//! connections: any first TLS record (at most 2^14 + 5 bytes, as the server reads it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let record = &data[..data.len().min((1 << 14) + 5)];
    let _ = weft_proxy::fuzz_support::inspect_hello(record);
});
