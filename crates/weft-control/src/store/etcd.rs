//! [`EtcdStore`]: dtabs in an etcd v3 cluster.

use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use weft_config::{EtcdConfig, EtcdPassword};
use weft_naming::Dtab;

use super::{valid_namespace, DtabStore, StoreError, StoreFuture, Versioned, Watchers};

/// The first and the longest wait between attempts to re-establish the watch.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The pause before trying a call again that could not reach a member.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Dtabs in etcd (`storage: {kind: etcd, endpoints, prefix}`): namespace `ns` is the key
/// `<prefix><ns>` (default prefix `/weft/dtabs/`) holding the dtab's text, one dentry per
/// line, so `etcdctl get --prefix /weft/dtabs/` shows them readably.
///
/// The version is the key's `mod_revision`. Create, update and delete are single etcd
/// transactions comparing `create_revision` (create: the key must not exist) or
/// `mod_revision` (compare-and-set), so a write is applied whole or not at all, and two
/// control instances sharing a cluster never overwrite each other's changes unknowingly.
///
/// One etcd watch over the whole prefix feeds every [`DtabStore::watch`] receiver. After a
/// broken stream it resumes from the last revision seen; if etcd has compacted that revision
/// away it re-reads the prefix. While etcd is unreachable, receivers keep their last value
/// and operations fail with [`StoreError::is_unavailable`] after the configured timeout.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// Ends the watch task when the last clone is dropped (the task holds `inner` while it
    /// waits for etcd, so it cannot notice the drop by itself).
    _stop: Arc<tokio_util::sync::DropGuard>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ConnectOptions,
    prefix: String,
    timeout: Duration,
    client: Mutex<Option<Client>>,
    watchers: Watchers,
}

// === impl EtcdStore ===

impl EtcdStore {
    /// Prepares a client for the cluster and starts the watch task. A cluster that is down is
    /// not an error: the store connects when first used and keeps retrying.
    ///
    /// # Errors
    /// The TLS files or the password file cannot be read.
    pub async fn connect(config: &EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(10), config.timeout);
        if let Some((user, password)) = &config.user {
            let password = match password {
                EtcdPassword::Inline(p) => p.clone(),
                EtcdPassword::File(f) => std::fs::read_to_string(f)
                    .map_err(|e| StoreError::internal(format!("{}: {e}", f.display())))?
                    .trim_end()
                    .to_owned(),
            };
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let inner = Arc::new(Inner {
            endpoints: config.endpoints.clone(),
            options,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            client: Mutex::new(None),
            watchers: Watchers::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(watch_task(Arc::downgrade(&inner), stop.clone()));
        Ok(EtcdStore {
            inner,
            _stop: Arc::new(stop.drop_guard()),
        })
    }
}

fn tls_options(tls: &weft_config::BackendTls) -> Result<etcd_client::TlsOptions, StoreError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StoreError::internal(format!("{}: {e}", p.display())))
    };
    let mut options = etcd_client::TlsOptions::new();
    for ca in &tls.trust_certs {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let Some(auth) = &tls.client_auth {
        options = options.identity(etcd_client::Identity::from_pem(
            read(&auth.cert_path)?,
            read(&auth.key_path)?,
        ));
    }
    if let Some(name) = &tls.common_name {
        options = options.domain_name(name.clone());
    }
    Ok(options)
}

impl Inner {
    fn key(&self, ns: &str) -> Result<String, StoreError> {
        if valid_namespace(ns) {
            Ok(format!("{}{ns}", self.prefix))
        } else {
            Err(StoreError::invalid(format!(
                "invalid namespace name \"{ns}\""
            )))
        }
    }

    /// A connected client: the shared one, or a new connection made now.
    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let connect = Client::connect(&self.endpoints, Some(self.options.clone()));
        let client = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(unavailable)?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one etcd call within the configured timeout; every failure means "unavailable".
    ///
    /// A call that failed before it reached a member (the client picked one that refuses
    /// connections, e.g. a killed member of a cluster) is tried again, on whichever member the
    /// client picks next, until the timeout: it was never sent, so repeating it is safe even
    /// for a write.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let client = tokio::time::timeout_at(deadline, self.client())
                .await
                .map_err(|_| self.timed_out())??;
            match tokio::time::timeout_at(deadline, f(client)).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if never_sent(&e) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "etcd member unreachable; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(e)) => return Err(unavailable(e)),
            }
        }
    }

    fn timed_out(&self) -> StoreError {
        StoreError::unavailable(format!(
            "etcd unavailable: no answer from {} within {:?}",
            self.endpoints.join(", "),
            self.timeout
        ))
    }

    fn versioned(&self, kv: &KeyValue) -> Result<Versioned, StoreError> {
        let text = kv.value_str().map_err(|e| {
            StoreError::internal(format!("etcd key {:?}: not UTF-8: {e}", kv.key_str()))
        })?;
        let dtab = Dtab::read(text).map_err(|e| {
            StoreError::internal(format!(
                "etcd key {}: stored dtab does not parse: {e}",
                String::from_utf8_lossy(kv.key())
            ))
        })?;
        Ok(Versioned {
            version: kv.mod_revision().to_string(),
            dtab,
        })
    }

    async fn get(&self, ns: &str) -> Result<(Option<Versioned>, i64), StoreError> {
        let key = self.key(ns)?;
        let rsp = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let at = rsp.header().map_or(0, |h| h.revision());
        let found = rsp.kvs().first().map(|kv| self.versioned(kv)).transpose()?;
        Ok((found, at))
    }

    /// Runs `txn`; on failure, reads what its `or_else` get found: the key's current state.
    async fn txn(&self, ns: &str, txn: Txn) -> Result<Result<i64, Option<i64>>, StoreError> {
        let rsp = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = rsp.header().map_or(0, |h| h.revision());
        if rsp.succeeded() {
            tracing::debug!(%ns, revision, "etcd write");
            return Ok(Ok(revision));
        }
        let current = rsp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(KeyValue::mod_revision)),
            _ => None,
        });
        Ok(Err(current.flatten()))
    }

    /// The compare for a conditional write: the key exists, at `expected` if given.
    fn exists_at(key: &str, expected: Option<&str>) -> Compare {
        match expected {
            // A version that is not a revision number matches nothing: a conflict.
            Some(v) => Compare::mod_revision(key, CompareOp::Equal, v.parse().unwrap_or(-1)),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        }
    }

    async fn write(
        &self,
        ns: &str,
        expected: Option<&str>,
        op: TxnOp,
    ) -> Result<String, StoreError> {
        let key = self.key(ns)?;
        let txn = Txn::new()
            .when([Self::exists_at(&key, expected)])
            .and_then([op])
            .or_else([TxnOp::get(key.clone(), None)]);
        match self.txn(ns, txn).await? {
            Ok(revision) => Ok(revision.to_string()),
            Err(None) => Err(StoreError::not_found(ns)),
            Err(Some(current)) => Err(StoreError::conflict(&current.to_string())),
        }
    }
}

/// Whether the call failed while connecting to a member, before anything was sent.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && status.message().contains("connect")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::unavailable(format!("etcd unavailable: {e}"))
}

fn text_of(dtab: &Dtab) -> String {
    format!("{dtab:#}")
}

impl DtabStore for EtcdStore {
    fn list(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let prefix = self.inner.prefix.clone();
            let opts = GetOptions::new().with_prefix().with_keys_only();
            let rsp = self
                .inner
                .call(|mut c| {
                    let (prefix, opts) = (prefix.clone(), opts.clone());
                    async move { c.get(prefix, Some(opts)).await }
                })
                .await?;
            let mut names: Vec<String> = rsp
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let key = std::str::from_utf8(kv.key()).ok()?;
                    let ns = key.strip_prefix(&self.inner.prefix)?;
                    valid_namespace(ns).then(|| ns.to_owned())
                })
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn get<'a>(&'a self, ns: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move { Ok(self.inner.get(ns).await?.0) })
    }

    fn create<'a>(&'a self, ns: &'a str, dtab: &'a Dtab) -> StoreFuture<'a, String> {
        Box::pin(async move {
            let key = self.inner.key(ns)?;
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), text_of(dtab), None)]);
            match self.inner.txn(ns, txn).await? {
                Ok(revision) => Ok(revision.to_string()),
                Err(_) => Err(StoreError::exists(ns)),
            }
        })
    }

    fn update<'a>(
        &'a self,
        ns: &'a str,
        dtab: &'a Dtab,
        expected: Option<&'a str>,
    ) -> StoreFuture<'a, String> {
        Box::pin(async move {
            let key = self.inner.key(ns)?;
            let put = TxnOp::put(key, text_of(dtab), None);
            self.inner.write(ns, expected, put).await
        })
    }

    fn delete<'a>(&'a self, ns: &'a str, expected: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = self.inner.key(ns)?;
            let delete = TxnOp::delete(key, None);
            self.inner.write(ns, expected, delete).await.map(drop)
        })
    }

    fn watch(&self, ns: &str) -> watch::Receiver<Option<Versioned>> {
        let rx = self.inner.watchers.subscribe(ns, || None);
        // The first value: read once; the watch task publishes everything after.
        let inner = Arc::downgrade(&self.inner);
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                let Some(store) = inner.upgrade() else { return };
                match store.get(&ns).await {
                    Ok((value, at)) => return store.watchers.publish(&ns, value, at),
                    Err(e) if e.is_invalid() => return,
                    Err(error) => tracing::debug!(%ns, %error, "etcd: first read of a watch"),
                }
                drop(store);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
        rx
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let prefix = self.inner.prefix.clone();
            let opts = GetOptions::new().with_prefix().with_count_only();
            self.inner
                .call(|mut c| {
                    let (prefix, opts) = (prefix.clone(), opts.clone());
                    async move { c.get(prefix, Some(opts)).await }
                })
                .await
                .map(drop)
        })
    }
}

// === the watch task ===

/// Keeps one etcd watch on the prefix and publishes every change to the watchers. Resumes
/// from the last revision after an error; re-reads the prefix when that revision was
/// compacted (or at the start).
async fn watch_task(inner: Weak<Inner>, stop: CancellationToken) {
    // The revision the watchers are up to date with; `None`: re-read first.
    let mut synced: Option<i64> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(store) = inner.upgrade() else { return };
        let round = tokio::select! {
            r = watch_round(&store, &mut synced) => r,
            () = stop.cancelled() => return,
        };
        drop(store);
        match round {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(error) => {
                tracing::debug!(%error, ?synced, "etcd watch interrupted; resuming");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One watch stream: re-reads if needed, then follows events until the stream ends.
async fn watch_round(store: &Inner, synced: &mut Option<i64>) -> Result<(), StoreError> {
    let revision = match *synced {
        Some(r) => r,
        None => {
            let r = resync(store).await?;
            *synced = Some(r);
            r
        }
    };
    let prefix = store.prefix.clone();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = store
        .call(|mut c| {
            let (prefix, opts) = (prefix.clone(), opts.clone());
            async move { c.watch(prefix, Some(opts)).await }
        })
        .await?;
    loop {
        let Some(rsp) = stream.message().await.map_err(unavailable)? else {
            return Err(StoreError::unavailable("etcd watch stream ended"));
        };
        if rsp.compact_revision() > 0 {
            tracing::info!(
                compacted = rsp.compact_revision(),
                "etcd compacted past our revision; re-reading the dtabs"
            );
            *synced = None;
            return Ok(());
        }
        if rsp.canceled() {
            return Err(StoreError::unavailable(format!(
                "etcd cancelled the watch: {}",
                rsp.cancel_reason()
            )));
        }
        for event in rsp.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(ns) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(&store.prefix))
            else {
                continue;
            };
            let value = match event.event_type() {
                EventType::Delete => None,
                EventType::Put => match store.versioned(kv) {
                    Ok(v) => Some(v),
                    Err(error) => {
                        tracing::warn!(%error, "watchers keep the last good dtab");
                        continue;
                    }
                },
            };
            store.watchers.publish(ns, value, kv.mod_revision());
            *synced = Some(kv.mod_revision());
        }
        if let Some(h) = rsp.header() {
            *synced = Some(synced.map_or(h.revision(), |s| s.max(h.revision())));
        }
    }
}

/// Reads every watched namespace at one revision and publishes it; returns that revision.
async fn resync(store: &Inner) -> Result<i64, StoreError> {
    let prefix = store.prefix.clone();
    let rsp = store
        .call(|mut c| {
            let prefix = prefix.clone();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    let revision = rsp.header().map_or(0, |h| h.revision());
    let mut present = std::collections::HashMap::new();
    for kv in rsp.kvs() {
        if let Some(ns) = std::str::from_utf8(kv.key())
            .ok()
            .and_then(|k| k.strip_prefix(&store.prefix))
        {
            present.insert(ns.to_owned(), kv);
        }
    }
    for ns in store.watchers.namespaces() {
        match present.get(ns.as_str()).map(|kv| store.versioned(kv)) {
            Some(Ok(v)) => store.watchers.publish(&ns, Some(v), revision),
            Some(Err(error)) => tracing::warn!(%error, "watchers keep the last good dtab"),
            None => store.watchers.publish(&ns, None, revision),
        }
    }
    Ok(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{contract, wait_for};
    use weft_test::Etcd;

    fn config(etcd: &Etcd, prefix: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: etcd.endpoints(),
            prefix: prefix.to_owned(),
            tls: None,
            user: None,
            timeout: Duration::from_secs(2),
        }
    }

    async fn store(etcd: &Etcd, prefix: &str) -> EtcdStore {
        EtcdStore::connect(&config(etcd, prefix))
            .await
            .expect("store")
    }

    fn one_and_two() -> (Dtab, Dtab) {
        let read = |s| Dtab::read(s).expect("dtab");
        (read("/svc => /#/one"), read("/svc => /#/two"))
    }

    #[tokio::test]
    async fn etcd_store_contract() {
        let etcd = Etcd::start().await;
        contract(&store(&etcd, "/t/").await).await;
    }

    #[tokio::test]
    async fn etcd_watch_sees_other_writers_and_survives_an_outage() {
        let mut etcd = Etcd::start().await;
        let (a, b) = (store(&etcd, "/weft/").await, store(&etcd, "/weft/").await);
        let (one, two) = one_and_two();
        let mut rx = b.watch("edge");
        a.create("edge", &one).await.expect("create through a");
        wait_for(&mut rx, Some(&one)).await;

        etcd.kill_all().await;
        let down = a.get("edge").await.expect_err("etcd is down");
        assert!(down.is_unavailable(), "{down}");
        assert!(b.check().await.is_err());
        assert_eq!(rx.borrow().as_ref().map(|v| &v.dtab), Some(&one));

        etcd.restart_all().await;
        let version = loop {
            match a.get("edge").await {
                Ok(Some(v)) => break v.version,
                Ok(None) => panic!("the dtab was lost"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        a.update("edge", &two, Some(&version))
            .await
            .expect("update after restart");
        wait_for(&mut rx, Some(&two)).await;
    }

    #[tokio::test]
    async fn etcd_watch_behind_a_compaction_reads_again() {
        let etcd = Etcd::start().await;
        let store = store(&etcd, "/c/").await;
        let (one, two) = one_and_two();
        let mut rx = store.watch("web");
        let v1 = store.create("web", &one).await.expect("create");
        wait_for(&mut rx, Some(&one)).await;
        let v2 = store.update("web", &two, Some(&v1)).await.expect("update");
        let revision: i64 = v2.parse().expect("a revision");
        let mut client = store.inner.client().await.expect("client");
        client.compact(revision, None).await.expect("compact");
        // A watch that must resume from before the compaction is told so, and re-reads.
        let mut synced = Some(revision - 2);
        watch_round(&store.inner, &mut synced)
            .await
            .expect("a compacted watch ends cleanly");
        assert_eq!(synced, None, "the next round re-reads");
        assert!(resync(&store.inner).await.expect("re-read") >= revision);
        wait_for(&mut rx, Some(&two)).await;
        assert_eq!(rx.borrow().as_ref().map(|v| v.version.clone()), Some(v2));
    }
}
