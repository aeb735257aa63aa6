//! The name tree parser (`NameTree::read`, the right side of a dentry, also read from the
//! control plane's API): what parses prints back to text that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_naming::NameTree;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = NameTree::read(text) else {
        return;
    };
    let printed = tree.to_string();
    assert_eq!(NameTree::read(&printed).as_ref(), Ok(&tree), "{printed}");
});
