//! [`NameTree`]: the tree of alternatives and weighted unions that dtabs and binding produce.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A tree of names, as in Finagle's `NameTree`.
///
/// Dentry destinations are `NameTree<Path>`; binding turns them into
/// [`BoundTree`](crate::BoundTree)s. The leaf symbols are written `~` (Neg), `!` (Fail) and
/// `$` (Empty) in a dtab.
#[derive(Clone, Debug)]
pub enum NameTree<T> {
    /// "No such name": an [`Alt`](NameTree::Alt) moves on to its next branch.
    Neg,
    /// Stop: the whole binding fails, no fallback.
    Fail,
    /// The name exists but has no addresses.
    Empty,
    /// One name.
    Leaf(T),
    /// Alternatives, tried first to last; the first that is not Neg wins (written `a | b`).
    Alt(Vec<NameTree<T>>),
    /// A weighted union: one branch is picked per request, at random in proportion to the
    /// weights (written `3 * a & 1 * b`).
    Union(Vec<Weighted<T>>),
}

/// One branch of a [`NameTree::Union`] with its weight.
///
/// Weights are relative, finite and not negative; the dtab parser never produces anything
/// else. A union branch written without a weight has weight `1.0`.
#[derive(Clone, Debug)]
pub struct Weighted<T> {
    /// Relative weight of this branch.
    pub weight: f64,
    /// The branch.
    pub tree: NameTree<T>,
}

// === impl NameTree ===

impl<T> NameTree<T> {
    /// Applies `f` to every leaf, keeping the shape.
    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        match self {
            NameTree::Neg => NameTree::Neg,
            NameTree::Fail => NameTree::Fail,
            NameTree::Empty => NameTree::Empty,
            NameTree::Leaf(t) => NameTree::Leaf(f(t)),
            NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| t.map(f)).collect()),
            NameTree::Union(ws) => NameTree::Union(
                ws.iter()
                    .map(|w| Weighted {
                        weight: w.weight,
                        tree: w.tree.map(f),
                    })
                    .collect(),
            ),
        }
    }

    /// All leaves, depth first, left to right.
    pub fn leaves(&self) -> Vec<&T> {
        fn walk<'a, T>(t: &'a NameTree<T>, out: &mut Vec<&'a T>) {
            match t {
                NameTree::Leaf(l) => out.push(l),
                NameTree::Alt(ts) => ts.iter().for_each(|t| walk(t, out)),
                NameTree::Union(ws) => ws.iter().for_each(|w| walk(&w.tree, out)),
                NameTree::Neg | NameTree::Fail | NameTree::Empty => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

impl<T> Weighted<T> {
    /// A branch with the default weight `1.0`.
    pub fn new(tree: NameTree<T>) -> Weighted<T> {
        Weighted { weight: 1.0, tree }
    }
}

// === trait impls ===

// Weights compare and hash by their bits so that `NameTree` (and `Dtab`) can be `Eq` and `Hash`;
// parsed weights are finite and never NaN, so this agrees with `==` on the values we produce
// (except that `0.0` and `-0.0` differ, which the parser cannot produce).

impl<T: PartialEq> PartialEq for NameTree<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NameTree::Neg, NameTree::Neg)
            | (NameTree::Fail, NameTree::Fail)
            | (NameTree::Empty, NameTree::Empty) => true,
            (NameTree::Leaf(a), NameTree::Leaf(b)) => a == b,
            (NameTree::Alt(a), NameTree::Alt(b)) => a == b,
            (NameTree::Union(a), NameTree::Union(b)) => a == b,
            _ => false,
        }
    }
}

impl<T: Eq> Eq for NameTree<T> {}

impl<T: Hash> Hash for NameTree<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            NameTree::Neg | NameTree::Fail | NameTree::Empty => {}
            NameTree::Leaf(t) => t.hash(state),
            NameTree::Alt(ts) => ts.hash(state),
            NameTree::Union(ws) => ws.hash(state),
        }
    }
}

impl<T: PartialEq> PartialEq for Weighted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.weight.to_bits() == other.weight.to_bits() && self.tree == other.tree
    }
}

impl<T: Eq> Eq for Weighted<T> {}

impl<T: Hash> Hash for Weighted<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.weight.to_bits().hash(state);
        self.tree.hash(state);
    }
}

/// Prints the dtab syntax: `a | b`, `9*a & 1*b` (union weights always shown), `~`, `!`, `$`, with parentheses only where
/// needed. What the dtab parser produces prints back to text that parses to the same tree.
/// An `Alt` or `Union` without branches prints as `~` (both bind to Neg).
impl<T: fmt::Display> fmt::Display for NameTree<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_alt(self, f)
    }
}

fn show_alt<T: fmt::Display>(t: &NameTree<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match t {
        NameTree::Alt(ts) if ts.len() > 1 => {
            for (i, t) in ts.iter().enumerate() {
                if i > 0 {
                    f.write_str(" | ")?;
                }
                show_union(t, f)?;
            }
            Ok(())
        }
        _ => show_union(t, f),
    }
}

fn show_union<T: fmt::Display>(t: &NameTree<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match t {
        NameTree::Union(ws) if !ws.is_empty() => {
            for (i, w) in ws.iter().enumerate() {
                if i > 0 {
                    f.write_str(" & ")?;
                }
                // Every branch shows its weight, so a one-branch union parses back as a union.
                write!(f, "{}*", w.weight)?;
                show_simple(&w.tree, f)?;
            }
            Ok(())
        }
        _ => show_simple(t, f),
    }
}

fn show_simple<T: fmt::Display>(t: &NameTree<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match t {
        NameTree::Neg => f.write_str("~"),
        NameTree::Fail => f.write_str("!"),
        NameTree::Empty => f.write_str("$"),
        NameTree::Leaf(l) => write!(f, "{l}"),
        NameTree::Alt(ts) if ts.is_empty() => f.write_str("~"),
        NameTree::Alt(ts) if ts.len() == 1 => show_simple(&ts[0], f),
        NameTree::Union(ws) if ws.is_empty() => f.write_str("~"),
        NameTree::Alt(_) | NameTree::Union(_) => {
            f.write_str("(")?;
            show_alt(t, f)?;
            f.write_str(")")
        }
    }
}
