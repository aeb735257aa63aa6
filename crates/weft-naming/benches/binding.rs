//! Micro-benchmarks of naming on the request path (`cargo bench -p weft-naming`).
//!
//! `cached_binding` is what a router does per request for a name it has bound before: look the
//! live [`Binding`] up in its cache, read the current state and draw one bound name by weight.
//! `dtab_lookup` is one pure rewrite step, the unit of a (re)binding; `path_from_host` builds
//! the logical name the Host identifier produces.
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;

use criterion::{criterion_group, criterion_main, Criterion};
use weft_naming::{BindState, Binding, Dtab, Interpreter, Path, Sampled};

/// A dtab shaped like a production one: a handful of fallbacks and overrides.
const DTAB: &str = "/srv => /$/inet/127.0.0.1/9001; /srv/books => /$/inet/127.0.0.1/9002; \
    /srv/authors => 3 * /$/inet/127.0.0.1/9003 & 1 * /$/inet/127.0.0.1/9004; \
    /svc => /srv; /svc/legacy => /$/nil; /svc/bench.local => /srv/authors";

fn bench(c: &mut Criterion) {
    let dtab = Dtab::read(DTAB).expect("the dtab above parses");
    let name = Path::read("/svc/bench.local").expect("a valid path");

    c.bench_function("dtab_lookup", |b| {
        b.iter(|| black_box(&dtab).lookup(black_box(&name)))
    });

    c.bench_function("path_from_host", |b| {
        b.iter(|| Path::from_labels(["svc", black_box("bench.local")]))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime builds");
    let _guard = rt.enter();
    let interpreter = Interpreter::new(Vec::new());
    let cache: RwLock<HashMap<Path, Binding>> = RwLock::new(HashMap::new());
    for other in ["books", "authors", "legacy", "x", "y", "z"] {
        let p = Path::from_labels(["svc", other]);
        let b = interpreter.bind(dtab.clone(), p.clone());
        cache.write().expect("not poisoned").insert(p, b);
    }
    let binding = interpreter.bind(dtab.clone(), name.clone());
    cache
        .write()
        .expect("not poisoned")
        .insert(name.clone(), binding.clone());
    let mut state = binding.state();
    rt.block_on(state.wait_for(|s| matches!(s, BindState::Bound(_))))
        .expect("the binding task runs");

    c.bench_function("cached_binding", |b| {
        b.iter(|| {
            let binding = cache
                .read()
                .expect("not poisoned")
                .get(black_box(&name))
                .cloned()
                .expect("bound above");
            let state = binding.state();
            let tree = match &*state.borrow() {
                BindState::Bound(tree) => tree.clone(),
                _ => unreachable!("bound above"),
            };
            match tree.sample(fastrand::f64) {
                Sampled::Bound(bound) => Some(bound.clone()),
                _ => None,
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
