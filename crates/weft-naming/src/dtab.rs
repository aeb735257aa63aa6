//! [`Dtab`], [`Dentry`] and [`Prefix`]: delegation tables and one lookup step.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::path::write_label;
use crate::{DtabError, NameTree, Path};

/// A delegation table: an ordered list of rewrite rules ([`Dentry`]s), Finagle `Dtab`
/// semantics.
///
/// Text form: `prefix => tree` entries separated by `;`, e.g.
/// `/svc => /#/fs; /svc/books => 9 * /k8s/books-v1 & 1 * /k8s/books-v2`. See
/// `docs/routing.md` for the grammar. [`Display`](fmt::Display) prints one line that
/// [`Dtab::read`] parses back to an equal `Dtab`; the alternate form (`{:#}`) prints one
/// dentry per line.
///
/// Cloning is cheap (the entries are shared).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Dtab {
    dentries: Arc<[Dentry]>,
}

/// One dtab rule: paths starting with `prefix` are rewritten to `dst`, with the rest of the
/// path (the residual) appended to every leaf of `dst`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dentry {
    /// Which paths the rule applies to.
    pub prefix: Prefix,
    /// What they are rewritten to.
    pub dst: NameTree<Path>,
}

/// The left side of a [`Dentry`]: labels, where `*` matches exactly one label of any value.
///
/// Text form like a path, e.g. `/svc/*/books`; `/` alone matches every path. A literal `*`
/// label is written `\x2a`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prefix {
    elems: Vec<PrefixElem>,
}

/// One element of a [`Prefix`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrefixElem {
    /// Matches exactly this label.
    Label(Box<[u8]>),
    /// `*`: matches any one label.
    Any,
}

// === impl Dtab ===

impl Dtab {
    /// Parses a dtab from its text form.
    ///
    /// Whitespace is allowed between tokens, `#` starts a comment that runs to the end of the
    /// line (where a token may start; inside a path `#` is a label character, as in `/#/fs`),
    /// and an empty text is the empty dtab. Errors carry the line and column (both 1-based,
    /// columns in characters) and what was expected.
    pub fn read(s: &str) -> Result<Dtab, DtabError> {
        crate::parse::read_dtab(s)
    }

    /// The dtab without entries.
    pub fn empty() -> Dtab {
        Dtab::default()
    }

    /// True if there are no dentries.
    pub fn is_empty(&self) -> bool {
        self.dentries.is_empty()
    }

    /// `self`'s dentries followed by `other`'s. Later entries win, so `other` overrides `self`
    /// (this is how `l5d-dtab` request headers are applied over the router's dtab).
    pub fn concat(&self, other: &Dtab) -> Dtab {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        self.dentries
            .iter()
            .chain(other.dentries.iter())
            .cloned()
            .collect()
    }

    /// The dentries, first to last (the last one has the highest priority).
    pub fn dentries(&self) -> &[Dentry] {
        &self.dentries
    }

    /// One lookup step: the tree that `path` is rewritten to.
    ///
    /// Dentries are scanned from the last to the first; every dentry whose prefix matches
    /// contributes its `dst` with the residual appended to every leaf. No match gives
    /// [`NameTree::Neg`], one match its tree, several `Alt(last match, ..., first match)`.
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut matches: Vec<NameTree<Path>> = self
            .matches(path)
            .map(|(d, residual)| d.dst_with(&residual))
            .collect();
        match matches.len() {
            0 => NameTree::Neg,
            1 => matches.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(matches),
        }
    }

    /// The dentries matching `path`, last to first, with the residual of each.
    pub(crate) fn matches<'a>(
        &'a self,
        path: &'a Path,
    ) -> impl Iterator<Item = (&'a Dentry, Path)> + 'a {
        self.dentries
            .iter()
            .rev()
            .filter_map(move |d| d.prefix.match_len(path).map(|n| (d, path.drop(n))))
    }
}

impl FromIterator<Dentry> for Dtab {
    fn from_iter<I: IntoIterator<Item = Dentry>>(iter: I) -> Dtab {
        Dtab {
            dentries: iter.into_iter().collect(),
        }
    }
}

impl fmt::Display for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.dentries.iter().enumerate() {
            if f.alternate() {
                writeln!(f, "{d};")?;
            } else {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{d}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dtab({self})")
    }
}

impl FromStr for Dtab {
    type Err = DtabError;
    fn from_str(s: &str) -> Result<Dtab, DtabError> {
        Dtab::read(s)
    }
}

impl serde::Serialize for Dtab {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Dtab {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dtab, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Dtab::read(&s).map_err(serde::de::Error::custom)
    }
}

// === impl Dentry ===

impl Dentry {
    /// Parses one dentry, e.g. `/svc => /#/fs`. Errors as for [`Dtab::read`].
    pub fn read(s: &str) -> Result<Dentry, DtabError> {
        crate::parse::read_dentry(s)
    }

    /// `dst` with `residual` appended to every leaf path.
    pub(crate) fn dst_with(&self, residual: &Path) -> NameTree<Path> {
        if residual.is_empty() {
            return self.dst.clone();
        }
        self.dst.map(&mut |p: &Path| p.concat(residual))
    }
}

impl fmt::Display for Dentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} => {}", self.prefix, self.dst)
    }
}

impl FromStr for Dentry {
    type Err = DtabError;
    fn from_str(s: &str) -> Result<Dentry, DtabError> {
        Dentry::read(s)
    }
}

// === impl Prefix ===

impl Prefix {
    /// A prefix from its elements.
    pub fn new(elems: Vec<PrefixElem>) -> Prefix {
        Prefix { elems }
    }

    /// The elements, first to last.
    pub fn elems(&self) -> &[PrefixElem] {
        &self.elems
    }

    /// Number of labels this prefix matches.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// True for `/`, which matches every path.
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// True if `path` starts with this prefix.
    pub fn matches(&self, path: &Path) -> bool {
        self.match_len(path).is_some()
    }

    fn match_len(&self, path: &Path) -> Option<usize> {
        if path.len() < self.elems.len() {
            return None;
        }
        let all = self.elems.iter().zip(path.labels()).all(|(e, l)| match e {
            PrefixElem::Any => true,
            PrefixElem::Label(want) => **want == *l,
        });
        all.then_some(self.elems.len())
    }
}

impl From<Path> for Prefix {
    fn from(path: Path) -> Prefix {
        Prefix {
            elems: path.labels().map(|l| PrefixElem::Label(l.into())).collect(),
        }
    }
}

impl fmt::Display for PrefixElem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixElem::Any => f.write_str("*"),
            PrefixElem::Label(l) => write_label(f, l),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elems.is_empty() {
            return f.write_str("/");
        }
        for e in &self.elems {
            f.write_str("/")?;
            match e {
                PrefixElem::Any => f.write_str("*")?,
                PrefixElem::Label(l) => write_label(f, l)?,
            }
        }
        Ok(())
    }
}
