//! [`Interpreter`] and [`Binding`]: live bindings that follow namer updates.

use std::any::Any;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use crate::bind::{bind_once, Outcome};
use crate::delegate::{DelegateNode, DelegateTree};
use crate::{BoundTree, Dtab, InetNamer, Namer, NamerStatus, Path, Resolution};

/// Binds paths under dtabs: either locally, with a fixed set of namers (the configured ones
/// plus the built-in `/$/inet` ([`InetNamer`]); `/$/fail` and `/$/nil` are handled by the
/// binder itself), or through a [`RemoteInterpreter`] such as the control plane's
/// resolution service (Linkerd 1's `io.l5d.namerd` interpreter).
///
/// Cloning is cheap and shares the namers (and so their caches and watches).
#[derive(Clone)]
pub struct Interpreter {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Local(Arc<[(Path, Arc<dyn Namer>)]>),
    Remote(Arc<dyn RemoteInterpreter>),
}

/// An interpreter that binds somewhere else, e.g. `weft control`'s resolution service
/// (`weft-resolve`): the dtab a caller passes is sent along as the *local* dtab, appended
/// after whatever dtab the remote side applies first (a control namespace's).
///
/// Wrapped by [`Interpreter::remote`], so that routers use it like the local one.
pub trait RemoteInterpreter: Send + Sync + 'static {
    /// Starts (or joins) a live binding of `path` under `dtab`; see [`Interpreter::bind`].
    fn bind(&self, dtab: Dtab, path: Path) -> Binding;

    /// Explains how `path` binds under `dtab`, waiting at most `wait`; see
    /// [`Interpreter::delegate`].
    fn delegate<'a>(
        &'a self,
        dtab: &'a Dtab,
        path: &'a Path,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = DelegateTree> + Send + 'a>>;

    /// The health of the remote side, shown like a namer's (with a prefix naming it).
    fn statuses(&self) -> Vec<(Path, NamerStatus)>;
}

/// A live binding of one path under one dtab; see [`Interpreter::bind`].
///
/// Clones share the same task; the task stops when the last clone is dropped (receivers
/// obtained from [`Binding::state`] then keep the last state).
#[derive(Clone)]
pub struct Binding {
    state: watch::Receiver<BindState>,
    _task: Arc<dyn Any + Send + Sync>,
}

/// The current state of a [`Binding`].
#[derive(Clone, Debug, PartialEq)]
pub enum BindState {
    /// A namer the binding needs is still loading.
    Pending,
    /// The bound tree (which may be `Neg`, `Fail` or `Empty`); pick per request with
    /// [`BoundTree::sample`](crate::BoundTree::sample).
    Bound(Arc<BoundTree>),
    /// Binding failed, e.g. `delegation loop: more than 100 steps`, or a namer error
    /// (`/#/fs/rates: rates:3: ...`).
    Failed(Arc<str>),
}

struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

// === impl Interpreter ===

impl Interpreter {
    /// An interpreter with `namers`, each under its prefix (such as `/#/fs`), plus the built-in
    /// `/$/inet`. When several prefixes match a path the longest wins; a configured namer at
    /// `/$/inet` replaces the built-in one.
    pub fn new(namers: Vec<(Path, Arc<dyn Namer>)>) -> Interpreter {
        let mut namers = namers;
        let inet = Path::from_labels(["$", "inet"]);
        if !namers.iter().any(|(p, _)| *p == inet) {
            namers.push((inet, Arc::new(InetNamer::new())));
        }
        // Longest prefix first, so the first match is the most specific.
        namers.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Interpreter {
            inner: Inner::Local(namers.into()),
        }
    }

    /// An interpreter that binds through `remote` (e.g. the control plane's resolution
    /// service) instead of local namers.
    pub fn remote(remote: Arc<dyn RemoteInterpreter>) -> Interpreter {
        Interpreter {
            inner: Inner::Remote(remote),
        }
    }

    /// True when this interpreter binds through a [`RemoteInterpreter`].
    pub fn is_remote(&self) -> bool {
        matches!(self.inner, Inner::Remote(_))
    }

    /// The configured namers (not the built-in `/$/inet`) that report backend health, with
    /// their prefixes, longest prefix first; for a remote interpreter, its own status.
    pub fn namer_statuses(&self) -> Vec<(Path, NamerStatus)> {
        match &self.inner {
            Inner::Local(namers) => namers
                .iter()
                .filter_map(|(p, n)| n.status().map(|s| (p.clone(), s)))
                .collect(),
            Inner::Remote(remote) => remote.statuses(),
        }
    }

    /// Starts a live binding of `path` under `dtab`.
    ///
    /// Spawns a tokio task that binds and re-binds whenever a namer watch it used changes; the
    /// state starts as [`BindState::Pending`] and is only updated when it changes. Must be
    /// called inside a tokio runtime; outside one the binding is
    /// [`BindState::Failed`].
    pub fn bind(&self, dtab: Dtab, path: Path) -> Binding {
        let namers = match &self.inner {
            Inner::Local(namers) => namers.clone(),
            Inner::Remote(remote) => return remote.bind(dtab, path),
        };
        let (tx, rx) = watch::channel(BindState::Pending);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tx.send_replace(BindState::Failed("binding needs a tokio runtime".into()));
            return Binding {
                state: rx,
                _task: Arc::new(AbortOnDrop(None)),
            };
        };
        let mut session = Session::new(namers);
        let task = runtime.spawn(async move {
            loop {
                let (out, _) = session.bind(&dtab, &path);
                let state = match out {
                    Outcome::Tree(t) => BindState::Bound(Arc::new(t)),
                    Outcome::Pending => BindState::Pending,
                    Outcome::Error(e) => BindState::Failed(e),
                };
                if let BindState::Failed(e) = &state {
                    tracing::debug!(%path, %dtab, error = %e, "binding failed");
                }
                tx.send_if_modified(|cur| {
                    let changed = *cur != state;
                    if changed {
                        *cur = state;
                    }
                    changed
                });
                tokio::select! {
                    () = session.changed() => {}
                    () = tx.closed() => break,
                }
            }
        });
        Binding {
            state: rx,
            _task: Arc::new(AbortOnDrop(Some(task.abort_handle()))),
        }
    }

    /// Explains how `path` binds under `dtab`, waiting at most `wait` for pending namers (a
    /// namer still pending after that shows as `pending`). Must be called inside a tokio
    /// runtime.
    pub async fn delegate(&self, dtab: &Dtab, path: &Path, wait: Duration) -> DelegateTree {
        let namers = match &self.inner {
            Inner::Local(namers) => namers.clone(),
            Inner::Remote(remote) => return remote.delegate(dtab, path, wait).await,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut session = Session::new(namers);
        loop {
            let (out, root) = session.bind(dtab, path);
            let pending = out == Outcome::Pending;
            if !pending || tokio::time::Instant::now() >= deadline {
                let result = match out {
                    Outcome::Tree(t) => DelegateNode::from_bound(&t),
                    Outcome::Pending => DelegateNode::new(crate::DelegateOutcome::Pending),
                    Outcome::Error(e) => DelegateNode::new(crate::DelegateOutcome::Error {
                        message: e.to_string(),
                    }),
                };
                return DelegateTree {
                    path: path.clone(),
                    dtab: dtab.clone(),
                    result,
                    root,
                };
            }
            let _ = tokio::time::timeout_at(deadline, session.changed()).await;
        }
    }
}

// === impl Binding ===

impl Binding {
    /// A binding whose state comes from `state`, kept alive by `keep` (dropped with the last
    /// clone: a task's abort guard, a shared stream's handle). For [`RemoteInterpreter`]s.
    pub fn from_watch(
        state: watch::Receiver<BindState>,
        keep: Arc<dyn Any + Send + Sync>,
    ) -> Binding {
        Binding { state, _task: keep }
    }

    /// A receiver of the binding's state; the current value is the latest state.
    pub fn state(&self) -> watch::Receiver<BindState> {
        self.state.clone()
    }

    /// The bound tree, if the binding is bound right now: what a request needs in the usual
    /// case, without a receiver of its own (see [`Binding::state`] to wait for a change).
    pub fn bound(&self) -> Option<Arc<BoundTree>> {
        match &*self.state.borrow() {
            BindState::Bound(tree) => Some(tree.clone()),
            _ => None,
        }
    }
}

/// The namer watches one binding uses, kept across re-binds so that lookups are not
/// restarted each time.
struct Session {
    namers: Arc<[(Path, Arc<dyn Namer>)]>,
    watches: HashMap<(usize, Path), Watch>,
}

struct Watch {
    rx: watch::Receiver<Resolution>,
    used: bool,
}

impl Session {
    fn new(namers: Arc<[(Path, Arc<dyn Namer>)]>) -> Session {
        Session {
            namers,
            watches: HashMap::new(),
        }
    }

    /// Binds once with the namers' current values; drops watches the binding no longer uses.
    fn bind(&mut self, dtab: &Dtab, path: &Path) -> (Outcome, DelegateNode) {
        for w in self.watches.values_mut() {
            w.used = false;
        }
        let namers = &self.namers;
        let watches = &mut self.watches;
        let mut resolver = |path: &Path| {
            let (i, (prefix, namer)) = namers
                .iter()
                .enumerate()
                .find(|(_, (prefix, _))| path.starts_with(prefix))?;
            let residual = path.drop(prefix.len());
            let w = watches
                .entry((i, residual))
                .or_insert_with_key(|(_, r)| Watch {
                    rx: namer.lookup(r),
                    used: false,
                });
            w.used = true;
            let resolution = w.rx.borrow_and_update().clone();
            Some((prefix.clone(), resolution))
        };
        let result = bind_once(dtab, path, &mut resolver);
        self.watches.retain(|_, w| w.used);
        result
    }

    /// Completes when any watched resolution changes. Watches whose namer went away are
    /// ignored; with none left this never completes.
    async fn changed(&mut self) {
        type Changed<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
        let mut futs: Vec<Changed<'_>> = self
            .watches
            .values_mut()
            .map(|w| Box::pin(async move { w.rx.changed().await.is_ok() }) as Changed<'_>)
            .collect();
        poll_fn(|cx| {
            let mut i = 0;
            while i < futs.len() {
                match futs[i].as_mut().poll(cx) {
                    Poll::Ready(true) => return Poll::Ready(()),
                    Poll::Ready(false) => {
                        drop(futs.swap_remove(i));
                    }
                    Poll::Pending => i += 1,
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, BoundName, NameTree};
    use std::sync::Mutex;

    /// A namer whose answers the test sets by hand.
    #[derive(Default)]
    struct Manual {
        names: Mutex<HashMap<Path, watch::Sender<Resolution>>>,
    }

    impl Manual {
        fn sender(&self, residual: &str) -> watch::Sender<Resolution> {
            let key = Path::read(residual).unwrap();
            let mut names = self.names.lock().unwrap();
            names
                .entry(key)
                .or_insert_with(|| watch::channel(Resolution::Pending).0)
                .clone()
        }
    }

    impl Namer for Manual {
        fn lookup(&self, residual: &Path) -> watch::Receiver<Resolution> {
            self.sender(&residual.take(1).to_string()).subscribe()
        }
    }

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    fn bound(id: &str, port: u16) -> Resolution {
        let addr = Address::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        Resolution::Bound(BoundName::new(p(id), vec![addr]))
    }

    fn setup() -> (Arc<Manual>, Interpreter) {
        let manual = Arc::new(Manual::default());
        let interp = Interpreter::new(vec![(p("/#/fs"), manual.clone() as Arc<dyn Namer>)]);
        (manual, interp)
    }

    async fn next_state(
        rx: &mut watch::Receiver<BindState>,
        pred: impl FnMut(&BindState) -> bool,
    ) -> BindState {
        let wait = rx.wait_for(pred);
        let state = tokio::time::timeout(Duration::from_secs(10), wait).await;
        state
            .expect("state within 10s")
            .expect("binding alive")
            .clone()
    }

    fn leaf_port(state: &BindState) -> Option<u16> {
        match state {
            BindState::Bound(t) => match &**t {
                NameTree::Leaf(b) => b.addrs.first().map(|a| a.addr.port()),
                _ => None,
            },
            _ => None,
        }
    }

    #[tokio::test]
    async fn binding_follows_namer_updates() {
        let (manual, interp) = setup();
        let dtab = Dtab::read("/svc => /#/fs").unwrap();
        let binding = interp.bind(dtab, p("/svc/rates"));
        let mut rx = binding.state();
        assert_eq!(*rx.borrow_and_update(), BindState::Pending);
        let rates = manual.sender("/rates");
        rates.send_replace(bound("/#/fs/rates", 1));
        next_state(&mut rx, |s| leaf_port(s) == Some(1)).await;
        rates.send_replace(bound("/#/fs/rates", 2));
        next_state(&mut rx, |s| leaf_port(s) == Some(2)).await;
        rates.send_replace(Resolution::Neg);
        let s = next_state(
            &mut rx,
            |s| matches!(s, BindState::Bound(t) if **t == NameTree::Neg),
        )
        .await;
        assert_eq!(s, BindState::Bound(Arc::new(NameTree::Neg)));
        rates.send_replace(Resolution::Failed("rates:1: bad".into()));
        let s = next_state(&mut rx, |s| matches!(s, BindState::Failed(_))).await;
        assert_eq!(s, BindState::Failed("/#/fs/rates: rates:1: bad".into()));
    }

    #[tokio::test]
    async fn fallback_follows_the_first_branch() {
        let (manual, interp) = setup();
        let dtab = Dtab::read("/svc => /#/fs/backup; /svc => /#/fs/main").unwrap();
        let binding = interp.bind(dtab, p("/svc"));
        let mut rx = binding.state();
        manual
            .sender("/backup")
            .send_replace(bound("/#/fs/backup", 9));
        manual.sender("/main").send_replace(Resolution::Neg);
        next_state(&mut rx, |s| leaf_port(s) == Some(9)).await;
        manual.sender("/main").send_replace(bound("/#/fs/main", 1));
        next_state(&mut rx, |s| leaf_port(s) == Some(1)).await;
    }

    #[tokio::test]
    async fn dropping_every_binding_clone_stops_the_task() {
        let (manual, interp) = setup();
        let binding = interp.bind(Dtab::read("/svc => /#/fs").unwrap(), p("/svc/a"));
        let clone = binding.clone();
        let a = manual.sender("/a");
        a.send_replace(bound("/#/fs/a", 1));
        let mut rx = clone.state();
        next_state(&mut rx, |s| leaf_port(s) == Some(1)).await;
        drop(binding);
        assert_eq!(a.receiver_count(), 1, "still watched through the clone");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(10), a.closed())
            .await
            .unwrap();
        // The state receiver keeps the last state.
        assert_eq!(leaf_port(&rx.borrow()), Some(1));
    }

    #[tokio::test]
    async fn loops_fail_and_builtins_bind() {
        let (_, interp) = setup();
        let b = interp.bind(Dtab::read("/a => /b; /b => /a").unwrap(), p("/a"));
        let s = next_state(&mut b.state(), |s| *s != BindState::Pending).await;
        assert_eq!(
            s,
            BindState::Failed("delegation loop: more than 100 steps".into())
        );
        let b = interp.bind(
            Dtab::read("/svc => /$/inet/127.0.0.1").unwrap(),
            p("/svc/8080"),
        );
        let s = next_state(&mut b.state(), |s| *s != BindState::Pending).await;
        assert_eq!(leaf_port(&s), Some(8080));
        let b = interp.bind(Dtab::read("/svc => /$/nil").unwrap(), p("/svc/x"));
        let s = next_state(&mut b.state(), |s| *s != BindState::Pending).await;
        assert_eq!(s, BindState::Bound(Arc::new(NameTree::Empty)));
    }

    #[tokio::test(start_paused = true)]
    async fn delegate_waits_for_pending_namers_up_to_the_limit() {
        let (manual, interp) = setup();
        let dtab = Dtab::read("/svc => /#/fs").unwrap();
        let start = tokio::time::Instant::now();
        let tree = interp
            .delegate(&dtab, &p("/svc/slow"), Duration::from_secs(2))
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let json = serde_json::to_value(&tree).unwrap();
        assert_eq!(json["result"]["type"], "pending");
        assert_eq!(json["root"]["delegate"]["type"], "pending");
        assert_eq!(json["root"]["delegate"]["namer"], "/#/fs");

        let fast = manual.sender("/fast");
        let answer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            fast.send_replace(bound("/#/fs/fast", 7));
        });
        let start = tokio::time::Instant::now();
        let tree = interp
            .delegate(&dtab, &p("/svc/fast"), Duration::from_secs(5))
            .await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        answer.await.unwrap();
        let text = tree.to_string();
        assert_eq!(
            text,
            "/svc/fast (dentry /svc => /#/fs) (residual /fast) ->\n  \
             /#/fs/fast (namer /#/fs) (residual /fast) -> bound /#/fs/fast [127.0.0.1:7]\n\
             result: -> bound /#/fs/fast [127.0.0.1:7]\n"
        );
    }
}
