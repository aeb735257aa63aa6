//! The CSR handling of `weft identity serve` (`weft_tls::ca::issue`), which reads what any
//! client that holds a token posts: input is the SPIFFE ID on the first line, then the CSR
//! PEM. Signed by a CA made once per process in a temporary directory. A certificate issued
//! is a chain of two PEM certificates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weft_tls::ca;

fn ca_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("weft-fuzz-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ca::init(&dir, "fuzz.example").expect("a CA in a fresh temporary directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (id, csr) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(chain) = ca::issue(ca_dir(), csr, id, ca::DEFAULT_LIFETIME) {
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    }
});
