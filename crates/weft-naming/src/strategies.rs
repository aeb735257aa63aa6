//! proptest strategies shared by the property tests of the parser (`parse_props.rs`) and of
//! the binder (`bind_props.rs`), which differ only in the paths, prefixes and weights they
//! draw from.

use proptest::prelude::*;

use crate::{Dentry, Dtab, NameTree, Path, Prefix, Weighted};

/// Name trees in the shapes the parser produces: leaves from `path`, alternatives of at
/// least two branches, unions of at least one branch with weights from `weight`.
pub(crate) fn tree(
    path: BoxedStrategy<Path>,
    weight: BoxedStrategy<f64>,
) -> BoxedStrategy<NameTree<Path>> {
    let leaf = prop_oneof![
        1 => Just(NameTree::Neg),
        1 => Just(NameTree::Fail),
        1 => Just(NameTree::Empty),
        6 => path.prop_map(NameTree::Leaf),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(NameTree::Alt),
            prop::collection::vec((weight.clone(), inner), 1..4).prop_map(|ws| {
                NameTree::Union(
                    ws.into_iter()
                        .map(|(weight, tree)| Weighted { weight, tree })
                        .collect(),
                )
            }),
        ]
    })
    .boxed()
}

/// Dtabs of up to four dentries.
pub(crate) fn dtab(
    prefix: BoxedStrategy<Prefix>,
    tree: BoxedStrategy<NameTree<Path>>,
) -> BoxedStrategy<Dtab> {
    prop::collection::vec((prefix, tree), 0..5)
        .prop_map(|ds| {
            ds.into_iter()
                .map(|(prefix, dst)| Dentry { prefix, dst })
                .collect()
        })
        .boxed()
}
