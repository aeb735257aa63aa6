//! [`Path`]: a sequence of byte-string labels, and its text form.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A hierarchical name such as `/svc/books` or `/$/inet/127.0.0.1/8080`.
///
/// A path is a sequence of non-empty labels; each label is an arbitrary byte string. The text
/// form is `/` followed by the labels separated by `/`; `/` alone is the empty path. Label bytes
/// in `A-Z a-z 0-9 _ : . # $ %` and `-` are printed as-is, every other byte as `\xNN` (two hex
/// digits), so `host:8080` is one label and `a b` is printed `a\x20b`. This is the Finagle
/// `Path` syntax.
///
/// Cloning is cheap (the labels are shared). Ordering is label by label, bytewise.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    labels: Arc<[Box<[u8]>]>,
}

/// Why a path's text form could not be read (see [`Path::read`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path at byte {offset}: {reason}")]
pub struct PathError {
    offset: usize,
    reason: &'static str,
}

impl PathError {
    /// Byte offset (0-based) in the input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

// === impl Path ===

impl Path {
    /// Reads a path from its text form, e.g. `/svc/books` or `/`.
    ///
    /// Leading and trailing ASCII whitespace is ignored. Errors: the text does not start with
    /// `/`, has an empty label (`/a//b`, `/a/`), a character outside the label set, or a bad
    /// `\xNN` escape.
    pub fn read(s: &str) -> Result<Path, PathError> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        let bytes = s.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(PathError {
                offset: 0,
                reason: "a path starts with '/'",
            });
        }
        if bytes.len() == 1 {
            return Ok(Path::empty());
        }
        let mut labels = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            // bytes[pos] == b'/' here.
            pos += 1;
            let (label, next) = read_label(bytes, pos)?;
            if label.is_empty() {
                return Err(PathError {
                    offset: pos,
                    reason: "empty label",
                });
            }
            labels.push(label.into_boxed_slice());
            pos = next;
        }
        Ok(Path {
            labels: labels.into(),
        })
    }

    /// The empty path, written `/`.
    pub fn empty() -> Path {
        Path {
            labels: Arc::new([]),
        }
    }

    /// Builds a path from labels; empty labels are skipped.
    pub fn from_labels<I, L>(labels: I) -> Path
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        let labels: Vec<Box<[u8]>> = labels
            .into_iter()
            .filter(|l| !l.as_ref().is_empty())
            .map(|l| l.as_ref().into())
            .collect();
        Path {
            labels: labels.into(),
        }
    }

    /// The labels, first to last.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &[u8]> + DoubleEndedIterator + '_ {
        self.labels.iter().map(|l| &**l)
    }

    /// The label at `index`, if any.
    pub fn label(&self, index: usize) -> Option<&[u8]> {
        self.labels.get(index).map(|l| &**l)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for the empty path `/`.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// True if the first labels of `self` are exactly the labels of `prefix`.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.labels.starts_with(&prefix.labels)
    }

    /// The first `n` labels (all of them if `n >= len`).
    pub fn take(&self, n: usize) -> Path {
        if n >= self.len() {
            return self.clone();
        }
        Path {
            labels: self.labels[..n].into(),
        }
    }

    /// All but the first `n` labels (the empty path if `n >= len`).
    pub fn drop(&self, n: usize) -> Path {
        if n == 0 {
            return self.clone();
        }
        Path {
            labels: self.labels[n.min(self.len())..].into(),
        }
    }

    /// `self` followed by `other`.
    pub fn concat(&self, other: &Path) -> Path {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Path {
            labels: self
                .labels
                .iter()
                .chain(other.labels.iter())
                .cloned()
                .collect(),
        }
    }
}

/// True for the bytes that are printed as-is in a label.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
}

/// Reads label bytes (plain bytes and `\xNN` escapes) from `pos` up to the next byte that is
/// neither. Returns the decoded label and the position after it.
pub(crate) fn read_label(bytes: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), PathError> {
    let mut label = Vec::new();
    while pos < bytes.len() {
        let b = bytes[pos];
        if is_label_byte(b) {
            label.push(b);
            pos += 1;
        } else if b == b'\\' {
            let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
            match (bytes.get(pos + 1), hex(pos + 2), hex(pos + 3)) {
                (Some(b'x'), Some(hi), Some(lo)) => {
                    // Both digits are < 16, so the value fits in a byte.
                    label.push((hi * 16 + lo) as u8);
                    pos += 4;
                }
                _ => {
                    return Err(PathError {
                        offset: pos,
                        reason: "bad escape, expected \\x and two hex digits",
                    })
                }
            }
        } else if b == b'/' {
            break;
        } else {
            return Err(PathError {
                offset: pos,
                reason: "character not allowed in a label (escape it as \\xNN)",
            });
        }
    }
    Ok((label, pos))
}

/// Writes one label in its text form.
pub(crate) fn write_label(f: &mut fmt::Formatter<'_>, label: &[u8]) -> fmt::Result {
    for &b in label {
        if is_label_byte(b) {
            fmt::Write::write_char(f, b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

// === trait impls ===

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("/");
        }
        for label in self.labels() {
            f.write_str("/")?;
            write_label(f, label)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Path, PathError> {
        Path::read(s)
    }
}

impl Default for Path {
    fn default() -> Path {
        Path::empty()
    }
}

impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Path, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Path::read(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    #[test]
    fn reads_and_prints() {
        assert_eq!(p("/").len(), 0);
        assert_eq!(p("/").to_string(), "/");
        assert_eq!(p("/svc/books").len(), 2);
        assert_eq!(p("/svc/books").to_string(), "/svc/books");
        assert_eq!(p("/$/inet/127.0.0.1/8080").len(), 4);
        assert_eq!(p("/#/fs/host:8080").label(2), Some(&b"host:8080"[..]));
        assert_eq!(p("  /a/b \n").to_string(), "/a/b");
    }

    #[test]
    fn escapes_round_trip() {
        let path = Path::from_labels(["a b", "x/y", "*", "ok"]);
        let text = path.to_string();
        assert_eq!(text, r"/a\x20b/x\x2fy/\x2a/ok");
        assert_eq!(p(&text), path);
        assert_eq!(p(r"/\x41\x7e").labels().collect::<Vec<_>>(), [&b"A~"[..]]);
        let bin = Path::from_labels([[0u8, 255, b'/']]);
        assert_eq!(p(&bin.to_string()), bin);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "", "svc", "//", "/a//b", "/a/", "/a b", r"/a\x4", r"/a\y41", "/é", "/*",
        ] {
            assert!(Path::read(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(Path::read("/a//b").unwrap_err().offset(), 3);
    }

    #[test]
    fn operations() {
        let path = p("/a/b/c");
        assert!(path.starts_with(&p("/a/b")));
        assert!(path.starts_with(&Path::empty()));
        assert!(!path.starts_with(&p("/a/c")));
        assert!(!p("/a").starts_with(&path));
        assert_eq!(path.take(2), p("/a/b"));
        assert_eq!(path.take(9), path);
        assert_eq!(path.drop(1), p("/b/c"));
        assert_eq!(path.drop(9), Path::empty());
        assert_eq!(p("/a").concat(&p("/b/c")), path);
        assert_eq!(Path::from_labels(["", "a", ""]), p("/a"));
        assert!(p("/a/b") < p("/b"));
    }

    #[test]
    fn serde_as_string() {
        let json = serde_json::to_string(&p("/svc/a\\x20b")).unwrap();
        assert_eq!(json, r#""/svc/a\\x20b""#);
        let back: Path = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p("/svc/a\\x20b"));
    }
}
