//! Property tests of the binder over random dtabs: what binding guarantees whatever the
//! dtab says. Names come from a small alphabet so that dentries match often; the in-memory
//! namer at `/#/fs` knows `a` and `b` (bound), `slow` (pending), and nothing else (neg).

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::strategies;
use crate::{Address, BoundName, Prefix, PrefixElem};

const NAMES: &[&str] = &["a", "b", "c", "slow"];

fn fs() -> Path {
    Path::from_labels(["#", "fs"])
}

fn bound(name: &str) -> BoundName {
    let port = 8000 + NAMES.iter().position(|n| *n == name).unwrap_or(0) as u16;
    let addr = Address::new(SocketAddr::from(([127, 0, 0, 1], port)));
    BoundName::new(fs().concat(&Path::from_labels([name])), vec![addr])
}

/// The namer at `/#/fs`: the first residual label names the service.
fn resolve(path: &Path) -> Option<(Path, Resolution)> {
    if !path.starts_with(&fs()) {
        return None;
    }
    let r = match path.label(2) {
        Some(b"a") => Resolution::Bound(bound("a")),
        Some(b"b") => Resolution::Bound(bound("b")),
        Some(b"slow") => Resolution::Pending,
        _ => Resolution::Neg,
    };
    Some((fs(), r))
}

fn bind(dtab: &Dtab, path: &Path) -> Outcome {
    bind_once(dtab, path, &mut resolve).0
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(NAMES)
}

/// Logical paths (`/x/...`, `/y/...`) and namer paths (`/#/fs/<name>`).
fn path() -> impl Strategy<Value = Path> {
    let logical = (
        prop::sample::select(&["x", "y"][..]),
        prop::collection::vec(name(), 0..3),
    )
        .prop_map(|(root, rest)| Path::from_labels(std::iter::once(root).chain(rest)));
    let namer = name().prop_map(|n| fs().concat(&Path::from_labels([n])));
    prop_oneof![logical, namer]
}

/// Prefixes of logical paths only (never `/` or `/*` first), so the namer's paths are left
/// alone and `/#/fs/<name>` always means the namer.
fn prefix() -> impl Strategy<Value = Prefix> {
    let elem = prop_oneof![
        name().prop_map(|n| PrefixElem::Label(n.as_bytes().into())),
        Just(PrefixElem::Any),
    ];
    (
        prop::sample::select(&["x", "y"][..]),
        prop::collection::vec(elem, 0..2),
    )
        .prop_map(|(root, rest)| {
            let mut elems = vec![PrefixElem::Label(root.as_bytes().into())];
            elems.extend(rest);
            Prefix::new(elems)
        })
}

fn tree() -> BoxedStrategy<NameTree<Path>> {
    let weight = (1u32..10).prop_map(f64::from).boxed();
    strategies::tree(path().boxed(), weight)
}

fn dtab() -> BoxedStrategy<Dtab> {
    strategies::dtab(prefix().boxed(), tree())
}

/// True if `t` has no `Alt` (binding resolves every alternative) and its unions have at
/// least two branches (one survivor collapses to itself).
fn is_bound_shape(t: &BoundTree) -> bool {
    match t {
        NameTree::Alt(_) => false,
        NameTree::Union(ws) => ws.len() > 1 && ws.iter().all(|w| is_bound_shape(&w.tree)),
        NameTree::Neg | NameTree::Fail | NameTree::Empty | NameTree::Leaf(_) => true,
    }
}

proptest! {
    #[test]
    fn bound_trees_have_no_alt_and_no_one_branch_union(d in dtab(), p in path()) {
        if let Outcome::Tree(t) = bind(&d, &p) {
            prop_assert!(is_bound_shape(&t), "{d} {p}: {t:?}");
        }
    }

    #[test]
    fn empty_dtab_asks_the_namers_directly(n in name()) {
        let p = fs().concat(&Path::from_labels([n]));
        let want = match resolve(&p).map(|(_, r)| r) {
            Some(Resolution::Bound(b)) => Outcome::Tree(NameTree::Leaf(b)),
            Some(Resolution::Pending) => Outcome::Pending,
            _ => Outcome::Tree(NameTree::Neg),
        };
        prop_assert_eq!(bind(&Dtab::empty(), &p), want);
        // A logical name means nothing without a dtab.
        let logical = Path::from_labels(["x", n]);
        prop_assert_eq!(bind(&Dtab::empty(), &logical), Outcome::Tree(NameTree::Neg));
    }

    #[test]
    fn neg_dentry_changes_nothing(d in dtab(), pre in prefix(), p in path()) {
        let with_neg = d.concat(&[Dentry { prefix: pre, dst: NameTree::Neg }].into_iter().collect());
        prop_assert_eq!(bind(&with_neg, &p), bind(&d, &p));
    }

    #[test]
    fn alias_dentry_binds_like_its_target(n in name(), rest in prop::collection::vec(name(), 0..2)) {
        // `/x => /#/fs`: `/x/<n>/...` binds as `/#/fs/<n>/...` does (the residual is appended).
        let alias: Dtab = [Dentry { prefix: Prefix::from(Path::from_labels(["x"])), dst: NameTree::Leaf(fs()) }]
            .into_iter()
            .collect();
        let tail = Path::from_labels(std::iter::once(n).chain(rest));
        let logical = Path::from_labels(["x"]).concat(&tail);
        prop_assert_eq!(bind(&alias, &logical), bind(&Dtab::empty(), &fs().concat(&tail)));
    }

    #[test]
    fn later_dentry_overrides_any_dtab(d in dtab(), p in path()) {
        // What an `l5d-dtab` header does: the last dentry is tried first, and a bound name
        // decides.
        prop_assume!(!p.starts_with(&fs()));
        let over: Dtab = [Dentry {
            prefix: Prefix::from(p.clone()),
            dst: NameTree::Leaf(fs().concat(&Path::from_labels(["b"]))),
        }]
        .into_iter()
        .collect();
        prop_assert_eq!(bind(&d.concat(&over), &p), Outcome::Tree(NameTree::Leaf(bound("b"))));
    }

    #[test]
    fn union_keeps_the_weights_of_its_bound_branches(
        ws in prop::collection::vec((1u32..100, name()), 1..5),
    ) {
        let union = NameTree::Union(
            ws.iter()
                .map(|(w, n)| Weighted {
                    weight: f64::from(*w),
                    tree: NameTree::Leaf(fs().concat(&Path::from_labels([*n]))),
                })
                .collect(),
        );
        let d: Dtab = [Dentry { prefix: Prefix::from(Path::from_labels(["x"])), dst: union }]
            .into_iter()
            .collect();
        let out = bind(&d, &Path::from_labels(["x"]));
        let live: Vec<(f64, BoundName)> = ws
            .iter()
            .filter(|(_, n)| matches!(*n, "a" | "b"))
            .map(|(w, n)| (f64::from(*w), bound(n)))
            .collect();
        let want = if ws.iter().any(|(_, n)| *n == "slow") {
            Outcome::Pending
        } else {
            match live.len() {
                0 => Outcome::Tree(NameTree::Neg),
                1 => Outcome::Tree(NameTree::Leaf(live[0].1.clone())),
                _ => Outcome::Tree(NameTree::Union(
                    live.into_iter()
                        .map(|(weight, b)| Weighted { weight, tree: NameTree::Leaf(b) })
                        .collect(),
                )),
            }
        };
        prop_assert_eq!(out, want);
    }
}
