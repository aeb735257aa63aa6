//! The binder: pure, recursive binding of a path under a dtab, with an explanation.
//!
//! Namers are reached only through a resolver closure that returns what a namer knows right
//! now, so the same code serves the live binding task, `delegate`, and in-memory unit tests.

use std::sync::Arc;

use crate::delegate::{DelegateNode, DelegateOutcome};
use crate::{BoundTree, Dentry, Dtab, NameTree, Path, Resolution, Weighted};

/// Longest chain of lookups from the root path to a leaf (Finagle uses the same limit).
pub(crate) const MAX_DEPTH: usize = 100;
/// Total lookups in one binding, so unions that fan out in a loop cannot explode.
pub(crate) const MAX_STEPS: usize = 10_000;

/// Offers a path to the namers: `Some((namer prefix, what the namer knows))`, or `None` when
/// no namer's prefix matches the path.
pub(crate) type Resolver<'r> = dyn FnMut(&Path) -> Option<(Path, Resolution)> + 'r;

/// The outcome of binding a (sub)tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Tree(BoundTree),
    Pending,
    Error(Arc<str>),
}

/// Binds `path` under `dtab` once, with what the namers know now. Returns the outcome and
/// the explanation of every step.
pub(crate) fn bind_once(
    dtab: &Dtab,
    path: &Path,
    resolver: &mut Resolver<'_>,
) -> (Outcome, DelegateNode) {
    let mut binder = Binder {
        dtab,
        resolver,
        steps: 0,
    };
    binder.path(path, 0)
}

struct Binder<'a, 'r> {
    dtab: &'a Dtab,
    resolver: &'a mut Resolver<'r>,
    steps: usize,
}

impl Binder<'_, '_> {
    /// Binds one path: dtab lookup first, namers when the lookup yields Neg.
    fn path(&mut self, path: &Path, depth: usize) -> (Outcome, DelegateNode) {
        self.steps += 1;
        if depth > MAX_DEPTH {
            return error_at(
                path,
                format!("delegation loop: more than {MAX_DEPTH} steps"),
            );
        }
        if self.steps > MAX_STEPS {
            return error_at(
                path,
                format!("delegation too large: more than {MAX_STEPS} lookups"),
            );
        }
        let matches: Vec<(&Dentry, Path)> = self.dtab.matches(path).collect();
        match matches.as_slice() {
            // As Finagle: a lookup that yields Neg goes to the namers.
            [] => self.namer(path, depth),
            [(d, _)] if d.dst == NameTree::Neg => self.namer(path, depth),
            [(d, residual)] => {
                let (out, node) = self.dst(&d.dst_with(residual), depth);
                (out, annotate(node, path, d, residual))
            }
            _ => {
                let (out, alt) = self.alt(
                    &matches,
                    |b, (d, residual)| {
                        let (out, node) = b.dst(&d.dst_with(residual), depth);
                        (out, annotate(node, path, d, residual))
                    },
                    |(d, residual)| {
                        let node = DelegateNode::at(path, DelegateOutcome::Skipped);
                        annotate(node, path, d, residual)
                    },
                );
                (out, DelegateNode::at(path, alt))
            }
        }
    }

    /// Binds the tree a path was rewritten to; the returned node describes it in place of the
    /// path (a single leaf becomes a `delegate` step).
    fn dst(&mut self, tree: &NameTree<Path>, depth: usize) -> (Outcome, DelegateNode) {
        match tree {
            NameTree::Leaf(p) => {
                let (out, node) = self.path(p, depth + 1);
                let delegate = DelegateOutcome::Delegate {
                    delegate: Box::new(node),
                };
                (out, DelegateNode::new(delegate))
            }
            other => self.tree(other, depth),
        }
    }

    fn tree(&mut self, tree: &NameTree<Path>, depth: usize) -> (Outcome, DelegateNode) {
        let leaf = |t: BoundTree, o: DelegateOutcome| (Outcome::Tree(t), DelegateNode::new(o));
        match tree {
            NameTree::Neg => leaf(NameTree::Neg, DelegateOutcome::Neg),
            NameTree::Fail => leaf(NameTree::Fail, DelegateOutcome::Fail),
            NameTree::Empty => leaf(NameTree::Empty, DelegateOutcome::Empty),
            NameTree::Leaf(p) => self.path(p, depth + 1),
            NameTree::Alt(ts) => {
                let (out, alt) = self.alt(
                    ts,
                    |b, t| b.tree(t, depth),
                    |t| {
                        let mut node = DelegateNode::new(DelegateOutcome::Skipped);
                        if let NameTree::Leaf(p) = t {
                            node.path = Some(p.clone());
                        }
                        node
                    },
                );
                (out, DelegateNode::new(alt))
            }
            NameTree::Union(ws) => self.union(ws, depth),
        }
    }

    /// `Alt`: the first branch that is not Neg decides (Fail, Pending and errors included);
    /// the branches after it are not bound. All Neg gives Neg.
    fn alt<I>(
        &mut self,
        items: &[I],
        mut bind: impl FnMut(&mut Self, &I) -> (Outcome, DelegateNode),
        skipped: impl Fn(&I) -> DelegateNode,
    ) -> (Outcome, DelegateOutcome) {
        let mut nodes = Vec::with_capacity(items.len());
        let mut decided = None;
        for item in items {
            if decided.is_some() {
                nodes.push(skipped(item));
                continue;
            }
            let (out, node) = bind(self, item);
            nodes.push(node);
            if !matches!(out, Outcome::Tree(NameTree::Neg)) {
                decided = Some(out);
            }
        }
        let out = decided.unwrap_or(Outcome::Tree(NameTree::Neg));
        (out, DelegateOutcome::Alt { alt: nodes })
    }

    /// `Union`: every branch is bound; an error or a Fail fails the union, a pending branch
    /// keeps it pending, Neg and Empty branches are dropped, one survivor collapses to itself
    /// and none gives Neg.
    fn union(&mut self, ws: &[Weighted<Path>], depth: usize) -> (Outcome, DelegateNode) {
        let mut nodes = Vec::with_capacity(ws.len());
        let (mut error, mut fail, mut pending) = (None, false, false);
        let mut survivors = Vec::new();
        for w in ws {
            let (out, mut node) = self.tree(&w.tree, depth);
            node.weight = Some(w.weight);
            nodes.push(node);
            match out {
                Outcome::Error(e) => {
                    error.get_or_insert(e);
                }
                Outcome::Pending => pending = true,
                Outcome::Tree(NameTree::Fail) => fail = true,
                Outcome::Tree(NameTree::Neg | NameTree::Empty) => {}
                Outcome::Tree(tree) => survivors.push(Weighted {
                    weight: w.weight,
                    tree,
                }),
            }
        }
        let out = if let Some(e) = error {
            Outcome::Error(e)
        } else if fail {
            Outcome::Tree(NameTree::Fail)
        } else if pending {
            Outcome::Pending
        } else if survivors.len() > 1 {
            Outcome::Tree(NameTree::Union(survivors))
        } else {
            Outcome::Tree(survivors.pop().map_or(NameTree::Neg, |w| w.tree))
        };
        (
            out,
            DelegateNode::new(DelegateOutcome::Union { union: nodes }),
        )
    }

    /// Offers `path` to the built-in `/$/fail` and `/$/nil`, then to the namers.
    fn namer(&mut self, path: &Path, depth: usize) -> (Outcome, DelegateNode) {
        let builtin = match (path.label(0), path.label(1)) {
            (Some(b"$"), Some(b"fail")) => Some((NameTree::Fail, DelegateOutcome::Fail)),
            (Some(b"$"), Some(b"nil")) => Some((NameTree::Empty, DelegateOutcome::Empty)),
            _ => None,
        };
        if let Some((tree, outcome)) = builtin {
            let mut node = DelegateNode::at(path, outcome);
            node.namer = Some(path.take(2));
            node.residual = Some(path.drop(2));
            return (Outcome::Tree(tree), node);
        }
        let Some((prefix, resolution)) = (self.resolver)(path) else {
            return (
                Outcome::Tree(NameTree::Neg),
                DelegateNode::at(path, DelegateOutcome::Neg),
            );
        };
        let (out, mut node) = match resolution {
            Resolution::Pending => (
                Outcome::Pending,
                DelegateNode::new(DelegateOutcome::Pending),
            ),
            Resolution::Neg => (
                Outcome::Tree(NameTree::Neg),
                DelegateNode::new(DelegateOutcome::Neg),
            ),
            Resolution::Bound(b) => {
                let outcome = DelegateOutcome::Bound {
                    id: b.id.clone(),
                    addrs: b.addrs.to_vec(),
                };
                (Outcome::Tree(NameTree::Leaf(b)), DelegateNode::new(outcome))
            }
            Resolution::Failed(message) => (
                Outcome::Error(format!("{path}: {message}").into()),
                DelegateNode::new(DelegateOutcome::Error {
                    message: message.to_string(),
                }),
            ),
            Resolution::Delegate(tree) => self.dst(&tree, depth),
        };
        node.path = Some(path.clone());
        node.residual = Some(path.drop(prefix.len()));
        node.namer = Some(prefix);
        (out, node)
    }
}

fn annotate(mut node: DelegateNode, path: &Path, d: &Dentry, residual: &Path) -> DelegateNode {
    node.path = Some(path.clone());
    node.dentry = Some(d.to_string());
    node.residual = Some(residual.clone());
    node
}

fn error_at(path: &Path, message: String) -> (Outcome, DelegateNode) {
    let node = DelegateNode::at(
        path,
        DelegateOutcome::Error {
            message: message.clone(),
        },
    );
    (Outcome::Error(message.into()), node)
}

#[cfg(test)]
#[path = "bind_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "bind_props.rs"]
mod props;
