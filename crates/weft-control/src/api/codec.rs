//! A dtab as namerd's JSON (`[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]`) and back.

use serde::{Deserialize, Serialize};
use weft_naming::{Dentry, Dtab};

/// The media type of the dtab text form, as namerd used it.
pub(crate) const DTAB_MEDIA_TYPE: &str = "application/dtab";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDentry {
    prefix: String,
    dst: String,
}

/// The dtab as a JSON list of `{prefix, dst}`, each in the dtab text form.
pub(crate) fn to_json(dtab: &Dtab) -> serde_json::Value {
    let list: Vec<JsonDentry> = dtab
        .dentries()
        .iter()
        .map(|d| JsonDentry {
            prefix: d.prefix.to_string(),
            dst: d.dst.to_string(),
        })
        .collect();
    serde_json::to_value(list).unwrap_or_default()
}

/// Parses namerd's JSON form. Errors say which entry failed and where (line and column of
/// the JSON, or of the entry's `prefix => dst` text).
pub(crate) fn from_json(body: &[u8]) -> Result<Dtab, String> {
    let list: Vec<JsonDentry> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON dtab: {e}"))?;
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let text = format!("{} => {}", d.prefix, d.dst);
            Dentry::read(&text).map_err(|e| format!("invalid dtab: entry {i} ({text:?}): {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_errors() {
        let dtab =
            Dtab::read("/svc => /#/fs; /svc/b => 9 * /#/fs/b1 & 1 * /#/fs/b2").expect("dtab");
        let v = to_json(&dtab);
        assert_eq!(v[0]["prefix"], "/svc");
        assert_eq!(v[1]["dst"], "9*/#/fs/b1 & 1*/#/fs/b2");
        let back = from_json(v.to_string().as_bytes()).expect("parses back");
        assert_eq!(back, dtab);
        let err = from_json(br#"[{"prefix": "/svc", "dst": "/#/fs &"}]"#).expect_err("bad dst");
        assert!(err.contains("entry 0") && err.contains("column"), "{err}");
        assert!(from_json(b"{").expect_err("bad json").contains("line 1"));
    }
}
