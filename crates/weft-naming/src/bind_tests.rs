use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;
use crate::{Address, BoundName};

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn dtab(s: &str) -> Dtab {
    Dtab::read(s).unwrap()
}

fn bound(id: &str, ports: &[u16]) -> BoundName {
    let addrs: Vec<Address> = ports
        .iter()
        .map(|port| Address::new(SocketAddr::from(([127, 0, 0, 1], *port))))
        .collect();
    BoundName::new(p(id), addrs)
}

/// An in-memory namer at `/#/fs`: services map to resolutions; anything else is Neg.
struct Memory(HashMap<Path, Resolution>);

impl Memory {
    fn new(entries: &[(&str, Resolution)]) -> Memory {
        Memory(entries.iter().map(|(k, v)| (p(k), v.clone())).collect())
    }

    fn with_services(names: &[&str]) -> Memory {
        let mut m = Memory(HashMap::new());
        for (i, name) in names.iter().enumerate() {
            let id = format!("/#/fs/{name}");
            let b = bound(&id, &[8000 + i as u16]);
            m.0.insert(p(&format!("/{name}")), Resolution::Bound(b));
        }
        m
    }

    fn bind(&self, dtab: &Dtab, path: &str) -> (Outcome, DelegateNode) {
        let fs = p("/#/fs");
        let mut resolver = |path: &Path| {
            if !path.starts_with(&fs) {
                return None;
            }
            let residual = path.drop(fs.len());
            // The fs namer looks at the first residual label only.
            let r = self
                .0
                .get(&residual.take(1))
                .cloned()
                .unwrap_or(Resolution::Neg);
            Some((fs.clone(), r))
        };
        bind_once(dtab, &p(path), &mut resolver)
    }

    fn tree(&self, dtab: &Dtab, path: &str) -> BoundTree {
        match self.bind(dtab, path).0 {
            Outcome::Tree(t) => t,
            other => panic!("expected a tree, got {other:?}"),
        }
    }
}

fn leaf_id(t: &BoundTree) -> String {
    match t {
        NameTree::Leaf(b) => b.id.to_string(),
        other => panic!("expected a leaf, got {other:?}"),
    }
}

/// The union's (weight, id) pairs.
fn union_ids(t: &BoundTree) -> Vec<(f64, String)> {
    match t {
        NameTree::Union(ws) => ws.iter().map(|w| (w.weight, leaf_id(&w.tree))).collect(),
        other => panic!("expected a union, got {other:?}"),
    }
}

const WORKED: &str = "
    /k8s       => /#/fs;
    /svc       => /k8s;
    /svc/books => 9 * /k8s/books-v1 & 1 * /k8s/books-v2;
";

#[test]
fn worked_example_splits_nine_to_one() {
    let ns = Memory::with_services(&["books-v1", "books-v2", "books"]);
    let t = ns.tree(&dtab(WORKED), "/svc/books");
    assert_eq!(
        union_ids(&t),
        [
            (9.0, "/#/fs/books-v1".to_string()),
            (1.0, "/#/fs/books-v2".to_string())
        ]
    );
    let mut rng = fastrand::Rng::with_seed(1);
    let v1 = (0..10_000)
        .filter(|_| match t.sample(|| rng.f64()) {
            crate::Sampled::Bound(b) => b.id == p("/#/fs/books-v1"),
            _ => false,
        })
        .count();
    assert!((8_700..9_300).contains(&v1), "{v1}");
}

#[test]
fn worked_example_unknown_branch_collapses_union() {
    let ns = Memory::with_services(&["books-v1", "books"]);
    let t = ns.tree(&dtab(WORKED), "/svc/books");
    assert_eq!(leaf_id(&t), "/#/fs/books-v1");
}

#[test]
fn worked_example_falls_back_to_svc_rule_when_union_is_neg() {
    let ns = Memory::with_services(&["books"]);
    let t = ns.tree(&dtab(WORKED), "/svc/books");
    assert_eq!(leaf_id(&t), "/#/fs/books");
    let ns = Memory::with_services(&[]);
    assert_eq!(ns.tree(&dtab(WORKED), "/svc/books"), NameTree::Neg);
}

#[test]
fn worked_example_l5d_dtab_override_wins() {
    let ns = Memory::with_services(&["books-v1", "books-v2", "books-v3"]);
    let header = dtab("/svc/books => /k8s/books-v3");
    let t = ns.tree(&dtab(WORKED).concat(&header), "/svc/books");
    assert_eq!(leaf_id(&t), "/#/fs/books-v3");
    // Other names are untouched by the override.
    let ns = Memory::with_services(&["authors"]);
    let t = ns.tree(&dtab(WORKED).concat(&header), "/svc/authors");
    assert_eq!(leaf_id(&t), "/#/fs/authors");
}

#[test]
fn residual_is_appended_through_every_step() {
    let ns = Memory::new(&[("/users", Resolution::Bound(bound("/#/fs/users", &[1])))]);
    let t = ns.tree(&dtab("/svc => /#/fs"), "/svc/users/extra/labels");
    assert_eq!(leaf_id(&t), "/#/fs/users");
}

#[test]
fn delegation_loop_fails_after_depth_limit() {
    let ns = Memory::with_services(&[]);
    let (out, _) = ns.bind(&dtab("/a => /b; /b => /a"), "/a");
    assert_eq!(
        out,
        Outcome::Error("delegation loop: more than 100 steps".into())
    );
    let (out, _) = ns.bind(&dtab("/a => /a/x"), "/a");
    assert!(matches!(out, Outcome::Error(m) if m.starts_with("delegation loop")));
    // A chain of exactly 100 rewrites is fine.
    let chain: String = (0..100).map(|i| format!("/n{i} => /n{};", i + 1)).collect();
    let ns = Memory::new(&[]);
    assert_eq!(ns.tree(&dtab(&chain), "/n0"), NameTree::Neg);
}

#[test]
fn fan_out_loop_is_bounded() {
    let ns = Memory::with_services(&[]);
    let (out, _) = ns.bind(&dtab("/a => /b & /b; /b => /a & /a"), "/a");
    assert!(matches!(out, Outcome::Error(_)), "{out:?}");
}

#[test]
fn alt_first_non_neg_wins() {
    let ns = Memory::with_services(&["b", "c"]);
    let d = dtab("/x => /#/fs/missing | /#/fs/b | /#/fs/c");
    assert_eq!(leaf_id(&ns.tree(&d, "/x")), "/#/fs/b");
    assert_eq!(ns.tree(&dtab("/x => ~ | ~"), "/x"), NameTree::Neg);
    // Fail stops the search.
    assert_eq!(ns.tree(&dtab("/x => ! | /#/fs/b"), "/x"), NameTree::Fail);
    assert_eq!(
        ns.tree(&dtab("/x => /$/fail | /#/fs/b"), "/x"),
        NameTree::Fail
    );
    // Empty is not Neg.
    assert_eq!(ns.tree(&dtab("/x => $ | /#/fs/b"), "/x"), NameTree::Empty);
    assert_eq!(
        ns.tree(&dtab("/x => /$/nil | /#/fs/b"), "/x"),
        NameTree::Empty
    );
}

#[test]
fn bound_but_empty_set_is_not_neg() {
    let ns = Memory::new(&[
        ("/empty", Resolution::Bound(bound("/#/fs/empty", &[]))),
        ("/b", Resolution::Bound(bound("/#/fs/b", &[1]))),
    ]);
    let t = ns.tree(&dtab("/x => /#/fs/empty | /#/fs/b"), "/x");
    match t {
        NameTree::Leaf(b) => {
            assert_eq!(b.id, p("/#/fs/empty"));
            assert!(b.addrs.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Also the dentry-level fallback: the newer /svc/x rule wins with its empty set.
    let d = dtab("/svc => /#/fs/b; /svc/x => /#/fs/empty");
    assert_eq!(leaf_id(&ns.tree(&d, "/svc/x")), "/#/fs/empty");
}

#[test]
fn union_rules() {
    let ns = Memory::with_services(&["a", "b"]);
    let t = ns.tree(&dtab("/x => 2*/#/fs/a & 3*/#/fs/b & ~ & $"), "/x");
    assert_eq!(
        union_ids(&t),
        [(2.0, "/#/fs/a".to_string()), (3.0, "/#/fs/b".to_string())]
    );
    assert_eq!(ns.tree(&dtab("/x => /#/fs/a & !"), "/x"), NameTree::Fail);
    assert_eq!(
        ns.tree(&dtab("/x => ~ & $ & /#/fs/no"), "/x"),
        NameTree::Neg
    );
    assert_eq!(
        leaf_id(&ns.tree(&dtab("/x => 5*/#/fs/a & ~"), "/x")),
        "/#/fs/a"
    );
    // A Neg union falls back in an Alt; a failed one does not.
    let d = dtab("/x => (~ & /#/fs/no) | /#/fs/b");
    assert_eq!(leaf_id(&ns.tree(&d, "/x")), "/#/fs/b");
    let d = dtab("/x => (! & /#/fs/a) | /#/fs/b");
    assert_eq!(ns.tree(&d, "/x"), NameTree::Fail);
}

#[test]
fn pending_namer_keeps_binding_pending() {
    let ns = Memory::new(&[
        ("/slow", Resolution::Pending),
        ("/b", Resolution::Bound(bound("/#/fs/b", &[1]))),
    ]);
    assert_eq!(ns.bind(&dtab("/x => /#/fs/slow"), "/x").0, Outcome::Pending);
    assert_eq!(
        ns.bind(&dtab("/x => /#/fs/slow | /#/fs/b"), "/x").0,
        Outcome::Pending
    );
    assert_eq!(
        ns.bind(&dtab("/x => /#/fs/b & /#/fs/slow"), "/x").0,
        Outcome::Pending
    );
    // A decided branch before the pending one does not wait for it.
    let t = ns.tree(&dtab("/x => /#/fs/b | /#/fs/slow"), "/x");
    assert_eq!(leaf_id(&t), "/#/fs/b");
}

#[test]
fn namer_errors_and_delegations() {
    let ns = Memory::new(&[
        ("/broken", Resolution::Failed("broken:3: bad port".into())),
        (
            "/alias",
            Resolution::Delegate(NameTree::read("/#/fs/missing | /#/fs/real").unwrap()),
        ),
        ("/real", Resolution::Bound(bound("/#/fs/real", &[1]))),
    ]);
    let (out, node) = ns.bind(&dtab("/x => /#/fs/broken | /#/fs/real"), "/x");
    assert_eq!(
        out,
        Outcome::Error("/#/fs/broken: broken:3: bad port".into())
    );
    assert!(node.to_string().contains("-> error: broken:3: bad port"));
    assert_eq!(
        leaf_id(&ns.tree(&dtab("/x => /#/fs/alias"), "/x")),
        "/#/fs/real"
    );
    // Paths that no namer handles are Neg.
    assert_eq!(ns.tree(&dtab("/x => /y"), "/x"), NameTree::Neg);
    // A lookup that yields Neg (a single `~` match) goes to the namers, as in Finagle.
    let t = ns.tree(&dtab("/#/fs => ~"), "/#/fs/real");
    assert_eq!(leaf_id(&t), "/#/fs/real");
}

#[test]
fn explanation_names_dentries_residuals_and_outcomes() {
    let ns = Memory::with_services(&["books-v1", "books"]);
    let d = dtab(WORKED);
    let (out, root) = ns.bind(&d, "/svc/books");
    let text = root.to_string();
    let want = "\
/svc/books -> alt
  /svc/books (dentry /svc/books => 9*/k8s/books-v1 & 1*/k8s/books-v2) (residual /) -> union
    9* /k8s/books-v1 (dentry /k8s => /#/fs) (residual /books-v1) ->
      /#/fs/books-v1 (namer /#/fs) (residual /books-v1) -> bound /#/fs/books-v1 [127.0.0.1:8000]
    1* /k8s/books-v2 (dentry /k8s => /#/fs) (residual /books-v2) ->
      /#/fs/books-v2 (namer /#/fs) (residual /books-v2) -> neg
  /svc/books (dentry /svc => /k8s) (residual /books) -> skipped
";
    assert_eq!(text, want);
    let Outcome::Tree(t) = out else { panic!() };
    let json = serde_json::to_value(DelegateNode::from_bound(&t)).unwrap();
    assert_eq!(json["type"], "bound");
    assert_eq!(json["id"], "/#/fs/books-v1");
    assert_eq!(json["addrs"][0]["addr"], "127.0.0.1:8000");
    let json = serde_json::to_value(&root).unwrap();
    assert_eq!(json["type"], "alt");
    assert_eq!(json["path"], "/svc/books");
    let union = &json["alt"][0];
    assert_eq!(
        union["dentry"],
        "/svc/books => 9*/k8s/books-v1 & 1*/k8s/books-v2"
    );
    assert_eq!(union["type"], "union");
    assert_eq!(union["union"][0]["weight"], 9.0);
    assert_eq!(union["union"][0]["delegate"]["type"], "bound");
    assert_eq!(json["alt"][1]["type"], "skipped");
}
