//! The path parser (`Path::read`): service names in config, `weft dtab delegate`, the admin
//! API and the control plane's resolution requests. What parses prints back to the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_naming::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = Path::read(text) else {
        return;
    };
    let printed = path.to_string();
    assert_eq!(Path::read(&printed).as_ref(), Ok(&path), "{printed}");
    assert!(path.labels().all(|l| !l.is_empty()), "{printed}");
    for n in 0..=path.len() {
        assert_eq!(path.take(n).concat(&path.drop(n)), path);
    }
});
