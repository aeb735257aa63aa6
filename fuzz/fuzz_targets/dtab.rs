//! The dtab parser (`Dtab::read`): config files, `weft dtab`, the control plane's API and
//! every request's `l5d-dtab` header. Whatever parses prints back, in both forms, to text
//! that parses to the same dtab, and each dentry does on its own too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_naming::{Dentry, Dtab, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dtab) = Dtab::read(text) else {
        return;
    };
    let printed = dtab.to_string();
    assert_eq!(Dtab::read(&printed).as_ref(), Ok(&dtab), "{printed}");
    let pretty = format!("{dtab:#}");
    assert_eq!(Dtab::read(&pretty).as_ref(), Ok(&dtab), "{pretty}");
    for d in dtab.dentries() {
        let one = d.to_string();
        assert_eq!(Dentry::read(&one).as_ref(), Ok(d), "{one}");
    }
    // One lookup step of each dentry's own prefix (wildcards as a label) never panics.
    for d in dtab.dentries() {
        let labels = d.prefix.elems().iter().map(|e| match e {
            weft_naming::PrefixElem::Label(l) => l.to_vec(),
            weft_naming::PrefixElem::Any => b"any".to_vec(),
        });
        let path = Path::from_labels(labels);
        let _ = dtab.lookup(&path);
    }
});
