//! The resolution service end to end in one process: real tonic servers on ephemeral
//! loopback ports, an in-memory dtab store, an fs namer on a temporary directory, and the
//! proxy's control-backed interpreter.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_naming::{
    BindState, Binding, Dtab, FsNamer, Interpreter, NameTree, Namer, NamerState, Path,
};
use weft_resolve::{ControlInterpreter, ControlSettings, MemoryDtabs, ResolveService};

/// Long enough for anything on loopback; only reached when a test is failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// One control instance: the resolution service on an ephemeral port.
struct Control {
    addr: SocketAddr,
    service: ResolveService,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Control {
    async fn start(dtabs: Arc<MemoryDtabs>, disco: &FsPath) -> Control {
        let namer: Arc<dyn Namer> = Arc::new(FsNamer::new(disco.to_path_buf()));
        let interpreter = Interpreter::new(vec![(p("/#/fs"), namer)]);
        let service = ResolveService::new(dtabs, interpreter);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.clone().serve(listener, stop.clone()));
        Control {
            addr,
            service,
            stop,
            task,
        }
    }

    /// Stops accepting and drops every connection, as a killed process would.
    async fn kill(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn dtab(s: &str) -> Dtab {
    Dtab::read(s).unwrap()
}

fn disco() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, port) in [("books", 8001), ("v1", 8101), ("v2", 8102)] {
        std::fs::write(dir.path().join(name), format!("127.0.0.1 {port}\n")).unwrap();
    }
    dir
}

fn client(addrs: &[SocketAddr], cache: Option<&FsPath>) -> ControlInterpreter {
    let mut settings =
        ControlSettings::new(addrs.iter().map(ToString::to_string).collect(), "default");
    settings.cache_file = cache.map(FsPath::to_path_buf);
    settings.backoff_max = Duration::from_millis(500);
    ControlInterpreter::new(settings).unwrap()
}

/// The port of the single endpoint a state binds to, if it is one leaf.
fn port(state: &BindState) -> Option<u16> {
    match state {
        BindState::Bound(t) => match &**t {
            NameTree::Leaf(b) => b.addrs.first().map(|a| a.addr.port()),
            _ => None,
        },
        _ => None,
    }
}

async fn wait_for(
    binding: &Binding,
    what: &str,
    mut pred: impl FnMut(&BindState) -> bool,
) -> BindState {
    let mut rx = binding.state();
    let found = tokio::time::timeout(PATIENCE, rx.wait_for(|s| pred(s))).await;
    match found {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("{what}: still {:?}", *binding.state().borrow()),
    }
}

async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn client_sees_bound_trees_and_a_dtab_change_rebinds() {
    let (_disco, dtabs, control, interp) = single(Some("/svc => /#/fs")).await;

    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    wait_for(&books, "bound to books", |s| port(s) == Some(8001)).await;
    dtabs.set("default", dtab("/svc => /#/fs; /svc/books => /#/fs/v2"));
    wait_for(&books, "re-bound to v2", |s| port(s) == Some(8102)).await;

    // A name nobody has: Neg, not an error.
    let none = interp.bind(Dtab::empty(), p("/svc/nobody"));
    let s = wait_for(&none, "neg", |s| *s != BindState::Pending).await;
    assert_eq!(s, BindState::Bound(Arc::new(NameTree::Neg)));

    // The local dtab is appended after the namespace's, so it wins.
    let local = interp.bind(dtab("/svc/books => /#/fs/v1"), p("/svc/books"));
    wait_for(&local, "local override", |s| port(s) == Some(8101)).await;

    let watched = control.service.watched();
    let names: Vec<String> = watched
        .iter()
        .map(|w| {
            format!(
                "{} {} [{}] {}",
                w.namespace, w.path, w.local_dtab, w.streams
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "default /svc/books [] 1",
            "default /svc/books [/svc/books => /#/fs/v1] 1",
            "default /svc/nobody [] 1",
        ],
        "{watched:?}"
    );
    let stats = control.service.stats();
    assert_eq!((stats.streams, stats.connections), (3, 1), "{stats:?}");
    assert!(stats.updates_sent_total >= 4, "{stats:?}");
    control.kill().await;
}

#[tokio::test]
async fn bindings_are_shared_and_the_stream_closes_with_the_last_one() {
    let (_disco, _dtabs, control, interp) = single(Some("/svc => /#/fs")).await;
    let a = interp.bind(Dtab::empty(), p("/svc/books"));
    let b = interp.bind(Dtab::empty(), p("/svc/books"));
    wait_for(&b, "bound", |s| port(s) == Some(8001)).await;
    assert_eq!(
        control.service.stats().streams_total,
        1,
        "one stream for both"
    );
    // A second proxy watching the same name shares the binding on control.
    let proxy2 = client(&[control.addr], None).interpreter();
    let c = proxy2.bind(Dtab::empty(), p("/svc/books"));
    wait_for(&c, "bound", |s| port(s) == Some(8001)).await;
    let stats = control.service.stats();
    assert_eq!((stats.streams, stats.bindings), (2, 1), "{stats:?}");
    drop(c);
    drop(a);
    drop(b);
    let service = control.service.clone();
    poll("streams and binding closed on control", || {
        let stats = service.stats();
        (service.watched().is_empty() && stats.bindings == 0).then_some(())
    })
    .await;
    control.kill().await;
}

#[tokio::test]
async fn union_weights_are_carried() {
    let (_disco, dtabs, control, interp) =
        single(Some("/svc/books => 9 * /#/fs/v1 & 1 * /#/fs/v2")).await;
    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    let s = wait_for(&books, "union", |s| matches!(s, BindState::Bound(_))).await;
    let BindState::Bound(tree) = s else {
        unreachable!()
    };
    let NameTree::Union(branches) = &*tree else {
        panic!("not a union: {tree:?}")
    };
    let weights: Vec<(f64, Option<u16>)> = branches
        .iter()
        .map(|w| {
            let port = match &w.tree {
                NameTree::Leaf(b) => b.addrs.first().map(|a| a.addr.port()),
                _ => None,
            };
            (w.weight, port)
        })
        .collect();
    assert_eq!(weights, [(9.0, Some(8101)), (1.0, Some(8102))]);
    dtabs.set("default", dtab("/svc/books => 1 * /#/fs/v1 & 1 * /#/fs/v2"));
    wait_for(&books, "50/50", |s| match s {
        BindState::Bound(t) => matches!(&**t, NameTree::Union(ws) if ws[0].weight == 1.0),
        _ => false,
    })
    .await;
    control.kill().await;
}

#[tokio::test]
async fn an_unknown_namespace_fails_the_binding() {
    let (_disco, dtabs, control, interp) = single(None).await;
    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    let s = wait_for(&books, "failed", |s| matches!(s, BindState::Failed(_))).await;
    assert_eq!(
        s,
        BindState::Failed("namespace default does not exist".into())
    );
    // Creating it binds the name.
    dtabs.set("default", dtab("/svc => /#/fs"));
    wait_for(&books, "bound", |s| port(s) == Some(8001)).await;
    control.kill().await;
}

/// One control instance whose namespace `default` has `dtab` (if any), and a client of it.
async fn single(
    dtab_text: Option<&str>,
) -> (tempfile::TempDir, Arc<MemoryDtabs>, Control, Interpreter) {
    let disco = disco();
    let dtabs = Arc::new(MemoryDtabs::new());
    if let Some(text) = dtab_text {
        dtabs.set("default", dtab(text));
    }
    let control = Control::start(dtabs.clone(), disco.path()).await;
    let interp = client(&[control.addr], None).interpreter();
    (disco, dtabs, control, interp)
}

/// Two control instances sharing one store, a client of both, and `/svc/books` bound.
struct Pair {
    _disco: tempfile::TempDir,
    dtabs: Arc<MemoryDtabs>,
    first: Control,
    second: Control,
    control: ControlInterpreter,
    interp: Interpreter,
    books: Binding,
}

impl Pair {
    async fn start() -> Pair {
        let disco = disco();
        let dtabs = Arc::new(MemoryDtabs::new());
        dtabs.set("default", dtab("/svc => /#/fs"));
        let first = Control::start(dtabs.clone(), disco.path()).await;
        let second = Control::start(dtabs.clone(), disco.path()).await;
        let control = client(&[first.addr, second.addr], None);
        let interp = control.interpreter();
        let books = interp.bind(Dtab::empty(), p("/svc/books"));
        wait_for(&books, "bound", |s| port(s) == Some(8001)).await;
        Pair {
            _disco: disco,
            dtabs,
            first,
            second,
            control,
            interp,
            books,
        }
    }
}

#[tokio::test]
async fn fails_over_to_the_second_instance_when_the_first_is_killed() {
    let Pair {
        _disco,
        dtabs,
        first,
        second,
        control,
        interp: _,
        books,
    } = Pair::start().await;
    assert_eq!(first.service.stats().streams, 1);
    assert_eq!(second.service.stats().streams, 0);
    let mut states = books.state();
    states.borrow_and_update();
    first.kill().await;
    let service = second.service.clone();
    poll("stream moved to the second instance", || {
        (service.stats().streams == 1).then_some(())
    })
    .await;
    // Nothing changed for the binding while it moved.
    assert!(!states.has_changed().unwrap(), "{:?}", *states.borrow());
    assert_eq!(port(&states.borrow_and_update()), Some(8001));
    dtabs.set("default", dtab("/svc => /#/fs; /svc/books => /#/fs/v1"));
    wait_for(&books, "re-bound through the second", |s| {
        port(s) == Some(8101)
    })
    .await;
    let status = control.status();
    poll("status ok again", || {
        (status.state() == NamerState::Ok).then_some(())
    })
    .await;
    second.kill().await;
}

#[tokio::test]
async fn with_every_instance_down_the_last_state_is_kept_and_stale() {
    let Pair {
        _disco,
        dtabs: _,
        first,
        second,
        control,
        interp,
        books,
    } = Pair::start().await;
    let before = books.state().borrow().clone();
    let mut states: watch::Receiver<BindState> = books.state();
    states.borrow_and_update();
    first.kill().await;
    second.kill().await;
    let status = control.status();
    poll("stale", || {
        (status.state() == NamerState::Stale).then_some(())
    })
    .await;
    let snap = status.snapshot();
    assert!(
        snap.last_error.is_some() && snap.failing_since.is_some(),
        "{snap:?}"
    );
    assert!(!states.has_changed().unwrap(), "the state never changed");
    assert_eq!(*books.state().borrow(), before);
    // A name first bound now has nothing to fall back on: pending, then the router's
    // binding timeout.
    let fresh = interp.bind(Dtab::empty(), p("/svc/v1"));
    assert_eq!(*fresh.state().borrow(), BindState::Pending);
    // The name still resolves after an instance comes back (on a new port: a new address
    // list is a new proxy config; the same client here keeps trying the old ones).
    assert_eq!(port(&books.state().borrow()), Some(8001));
}

#[tokio::test]
async fn the_cache_file_is_written_and_read_back_when_control_is_down() {
    let disco = disco();
    let state_dir = tempfile::tempdir().unwrap();
    let cache = state_dir.path().join("control.cache");
    let dtabs = Arc::new(MemoryDtabs::new());
    dtabs.set(
        "default",
        dtab("/svc => /#/fs; /svc/books => 3 * /#/fs/v1 & 1 * /#/fs/v2"),
    );
    let control = Control::start(dtabs.clone(), disco.path()).await;
    let first = client(&[control.addr], Some(&cache));
    let interp = first.interpreter();
    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    let v1 = interp.bind(dtab("/svc/x => /#/fs/v1"), p("/svc/x"));
    let union = wait_for(&books, "union", |s| matches!(s, BindState::Bound(_))).await;
    wait_for(&v1, "local", |s| port(s) == Some(8101)).await;
    let file = cache.clone();
    poll("cache file with both names", || {
        let fresh = client(&[control.addr], Some(&file));
        let both = fresh.cached(&p("/svc/books"), &Dtab::empty()) == Some(union.clone())
            && fresh
                .cached(&p("/svc/x"), &dtab("/svc/x => /#/fs/v1"))
                .is_some_and(|s| port(&s) == Some(8101));
        both.then_some(())
    })
    .await;
    drop((books, v1, interp, first));
    control.kill().await;

    // A restarted proxy with control unreachable starts from the cache, marked stale.
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let restarted = client(&[unreachable], Some(&cache));
    assert_eq!(restarted.status().state(), NamerState::Stale);
    let interp = restarted.interpreter();
    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    assert_eq!(*books.state().borrow(), union);
    let status = restarted.status();
    poll("a failed attempt recorded", || {
        (status.snapshot().errors > 0).then_some(())
    })
    .await;
    assert_eq!(status.state(), NamerState::Stale);
    assert_eq!(*books.state().borrow(), union, "kept while control is down");
}

#[tokio::test]
async fn delegate_explains_through_control() {
    let (_disco, _dtabs, control, interp) = single(Some("/svc => /#/fs")).await;
    let tree = interp
        .delegate(
            &dtab("/svc/books => /#/fs/v1"),
            &p("/svc/books"),
            Duration::from_secs(5),
        )
        .await;
    let text = tree.to_string();
    assert!(
        text.contains("(dentry /svc/books => /#/fs/v1)") && text.contains("127.0.0.1:8101"),
        "{text}"
    );
    control.kill().await;
    let tree = interp
        .delegate(&Dtab::empty(), &p("/svc/books"), Duration::from_secs(1))
        .await;
    assert!(
        tree.to_string().contains("no control instance answered"),
        "{tree}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtab_change_that_binds_the_same_tree_sends_nothing() {
    let (_disco, dtabs, control, interp) = single(Some("/svc => /#/fs")).await;
    let books = interp.bind(Dtab::empty(), p("/svc/books"));
    let other = interp.bind(Dtab::empty(), p("/svc/other"));
    wait_for(&books, "bound", |s| port(s) == Some(8001)).await;
    wait_for(&other, "neg", |s| *s != BindState::Pending).await;
    let sent = control.service.stats().updates_sent_total;
    // A new dtab under which /svc/books binds as before and /svc/other changes: the change
    // of /svc/other shows that control has applied it.
    dtabs.set("default", dtab("/svc => /#/fs; /svc/other => /#/fs/v1"));
    wait_for(&other, "other bound", |s| port(s) == Some(8101)).await;
    // Then a real change of /svc/books.
    dtabs.set(
        "default",
        dtab("/svc => /#/fs; /svc/other => /#/fs/v1; /svc/books => /#/fs/v2"),
    );
    wait_for(&books, "re-bound to v2", |s| port(s) == Some(8102)).await;
    let service = control.service.clone();
    poll("both updates counted", || {
        (service.stats().updates_sent_total >= sent + 2).then_some(())
    })
    .await;
    assert_eq!(
        control.service.stats().updates_sent_total,
        sent + 2,
        "/svc/other once, /svc/books once"
    );
    control.kill().await;
}

#[tokio::test]
async fn a_proxy_routing_more_names_than_hyper_allows_streams_by_default_gets_them_all() {
    let dtabs = Arc::new(MemoryDtabs::default());
    dtabs.set("default", dtab("/svc => /#/fs/books"));
    let dir = disco();
    let control = Control::start(dtabs, dir.path()).await;
    let c = client(&[control.addr], None);
    let interpreter = c.interpreter();
    // One connection, one stream per name: past hyper's default of 200 concurrent streams.
    let bindings: Vec<Binding> = (0..300)
        .map(|n| interpreter.bind(Dtab::empty(), p(&format!("/svc/name{n}"))))
        .collect();
    for (n, b) in bindings.iter().enumerate() {
        let state = wait_for(b, &format!("name {n}"), |s| port(s).is_some()).await;
        assert_eq!(port(&state), Some(8001));
    }
    control.kill().await;
}
