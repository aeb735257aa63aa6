//! Helpers shared by weft's fuzz targets (`fuzz_targets/`).

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request head's headers from `name: value` lines; lines without a colon, and names or
/// values that are not valid in HTTP, are skipped (hyper refuses those before weft sees them).
pub fn header_lines(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    headers
}
