//! Property tests of the dtab printer and parser: any dtab the parser can produce prints, in
//! both forms, to text that parses back to the same dtab; likewise paths and name trees.
//! (The fuzz targets `dtab`, `name_tree` and `path` check the same from the text side.)

use proptest::prelude::*;

use crate::strategies;
use crate::{Dtab, NameTree, Path, Prefix, PrefixElem};

/// Labels: any bytes (escaped when printed), biased to the printable label set.
fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-z0-9_:.#$%-]{1,6}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(label(), 0..4).prop_map(Path::from_labels)
}

fn prefix() -> impl Strategy<Value = Prefix> {
    let elem = prop_oneof![
        4 => label().prop_map(|l| PrefixElem::Label(l.into_boxed_slice())),
        1 => Just(PrefixElem::Any),
    ];
    prop::collection::vec(elem, 0..4).prop_map(Prefix::new)
}

/// Weights as the parser reads them: finite and not negative (any such `f64` prints as
/// decimal digits that read back to the same bits).
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(0.0),
        (0u32..100).prop_map(f64::from),
        (0.0f64..1e9),
        (1e-12f64..1e-3),
    ]
}

fn tree() -> BoxedStrategy<NameTree<Path>> {
    strategies::tree(path().boxed(), weight().boxed())
}

fn dtab() -> BoxedStrategy<Dtab> {
    strategies::dtab(prefix().boxed(), tree())
}

proptest! {
    #[test]
    fn printed_dtab_parses_to_the_same_dtab(d in dtab()) {
        let text = d.to_string();
        prop_assert_eq!(Dtab::read(&text), Ok(d.clone()), "{}", text);
        let pretty = format!("{d:#}");
        prop_assert_eq!(Dtab::read(&pretty), Ok(d), "{}", pretty);
    }

    #[test]
    fn printed_tree_parses_to_the_same_tree(t in tree()) {
        let text = t.to_string();
        prop_assert_eq!(NameTree::read(&text), Ok(t), "{}", text);
    }

    #[test]
    fn printed_path_parses_to_the_same_path(p in path()) {
        let text = p.to_string();
        prop_assert_eq!(Path::read(&text), Ok(p), "{}", text);
    }

    #[test]
    fn concat_then_print_is_printing_both(a in dtab(), b in dtab()) {
        let both = a.concat(&b);
        prop_assert_eq!(both.dentries().len(), a.dentries().len() + b.dentries().len());
        let text = format!("{a}; {b}");
        let read = Dtab::read(text.trim_start_matches("; "));
        prop_assert_eq!(read, Ok(both));
    }
}
