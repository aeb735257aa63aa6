//! TEMPORARY stand-in for `weft_naming::{Path, Dtab}` until that crate lands.
#![allow(unreachable_pub, missing_docs, dead_code)]
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Path(String);
#[derive(Debug)]
pub struct PathError(String);
impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Path {
    pub fn read(s: &str) -> Result<Path, PathError> {
        if !s.starts_with('/') {
            return Err(PathError("path must start with '/'".into()));
        }
        if s.contains(' ') || s.contains("//") {
            return Err(PathError("bad path".into()));
        }
        Ok(Path(s.trim_end_matches('/').to_string()).fix())
    }
    fn fix(self) -> Self {
        if self.0.is_empty() {
            Path("/".into())
        } else {
            self
        }
    }
}
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dtab(String);
#[derive(Debug)]
pub struct DtabError {
    line: usize,
    column: usize,
    msg: String,
}
impl DtabError {
    pub fn line(&self) -> usize {
        self.line
    }
    pub fn column(&self) -> usize {
        self.column
    }
}
impl fmt::Display for DtabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.msg
        )
    }
}
impl Dtab {
    pub fn read(s: &str) -> Result<Dtab, DtabError> {
        let mut out = Vec::new();
        for (i, line) in s.lines().enumerate() {
            for part in line.split(';') {
                let t = part.trim();
                if t.is_empty() {
                    continue;
                }
                let col = line.find(t).unwrap_or(0) + 1;
                let Some((a, b)) = t.split_once("=>") else {
                    let off = t.find(char::is_whitespace).unwrap_or(t.len());
                    return Err(DtabError {
                        line: i + 1,
                        column: col + off + 1,
                        msg: "expected '=>'".into(),
                    });
                };
                if !a.trim().starts_with('/') {
                    return Err(DtabError {
                        line: i + 1,
                        column: col,
                        msg: "expected a path".into(),
                    });
                }
                out.push(format!("{} => {}", a.trim(), b.trim()));
            }
        }
        Ok(Dtab(
            out.iter()
                .map(|d| format!("{d};"))
                .collect::<Vec<_>>()
                .join(""),
        ))
    }
}
impl fmt::Display for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
