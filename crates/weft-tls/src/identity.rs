//! [`Identity`]: the current material, the rustls configs that read it, and the file watcher.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use crate::material::{Files, Material};
use crate::verify::{self, CurrentCert, MeshClientVerifier, SpiffeServerVerifier};
use crate::TlsError;

/// How often the files are re-read even without a file-system event.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a change must be quiet before it is tried (cert and key are often replaced one
/// after the other).
const SETTLE: Duration = Duration::from_millis(150);
/// Client configs cached per expected server identity; past this the cache starts over.
const MAX_CLIENT_CONFIGS: usize = 4096;
/// ALPN offered and accepted between proxies.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where a proxy's identity lives: three PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The certificate chain: the leaf (with the SPIFFE ID as its URI SAN) first, then any
    /// intermediates (the issuer).
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The trust anchors (one or more self-signed roots) that peers' chains must lead to.
    pub trust_bundle: PathBuf,
}

/// A proxy's identity: SPIFFE ID, certificate chain and key, and trust bundle, reloaded live.
///
/// Cloning is cheap (an `Arc`). The configs it hands out read the current material on every
/// handshake, so after a reload new connections use the new material, and established ones
/// carry on with what they negotiated.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: IdentityConfig,
    state: Arc<State>,
    watching: AtomicBool,
    server: OnceLock<Arc<ServerConfig>>,
    clients: Mutex<HashMap<String, Arc<ClientConfig>>>,
    /// Bytes last tried (good or rejected), so one broken file is counted once.
    last_seen: Mutex<Option<Files>>,
    last_read_error: Mutex<Option<String>>,
}

/// What the rustls hooks share with the identity.
pub(crate) struct State {
    pub(crate) provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    reloads: AtomicU64,
    rejected: AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("spiffe_id", &self.current().spiffe_id)
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn current(&self) -> Arc<Material> {
        // A poisoned lock still holds a complete `Arc`: writers only swap it.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

// === impl Identity ===

impl Identity {
    /// Loads and validates the files: the key matches the certificate, the certificate carries
    /// a SPIFFE ID, chains to the bundle and is valid now for both server and client use.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and the problem.
    pub fn load(cfg: &IdentityConfig) -> Result<Identity, TlsError> {
        let provider = verify::provider();
        let files = Files::read(cfg)?;
        let material = Material::build(cfg, &files, &provider, UnixTime::now())?;
        Ok(Identity {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                state: Arc::new(State {
                    provider,
                    current: RwLock::new(Arc::new(material)),
                    reloads: AtomicU64::new(0),
                    rejected: AtomicU64::new(0),
                }),
                watching: AtomicBool::new(false),
                server: OnceLock::new(),
                clients: Mutex::new(HashMap::new()),
                last_seen: Mutex::new(Some(files)),
                last_read_error: Mutex::new(None),
            }),
        })
    }

    /// Starts watching the three files (file-system events, and a re-check every second).
    ///
    /// New material applies to new connections within about a second. A file that is broken,
    /// mismatched, expired or not chained to the bundle is rejected, logged at `warn` and
    /// counted ([`Identity::rejected_reloads`]), and the last good material stays in use.
    /// Calling it again does nothing; the watcher stops when the last clone is dropped. Must
    /// be called inside a tokio runtime (outside one it logs a warning and does nothing).
    pub fn watch(&self) {
        if self.inner.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("identity files not watched: no tokio runtime");
            self.inner.watching.store(false, Ordering::SeqCst);
            return;
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let fs_watcher = fs_watcher(&self.inner.cfg, wake.clone());
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(watch_loop(weak, wake, fs_watcher));
    }

    /// The local SPIFFE ID, e.g. `spiffe://weft.local/ns/default/sa/web`.
    pub fn spiffe_id(&self) -> String {
        self.inner.state.current().spiffe_id.clone()
    }

    /// The SNI under which clients reach this identity ([`crate::server_name_for`] of
    /// [`Identity::spiffe_id`]); the inbound side uses it to tell mesh TLS from TLS meant for
    /// the application.
    pub fn server_name(&self) -> Option<String> {
        crate::server_name_for(&self.spiffe_id()).ok()
    }

    /// The inbound rustls config: TLS 1.3 only, requires a client certificate chained to the
    /// current bundle with a SPIFFE ID in our trust domain, ALPN `h2` and `http/1.1`, and no
    /// session resumption (every connection sees the current material).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner
            .server
            .get_or_init(|| {
                let state = &self.inner.state;
                let mut cfg = ServerConfig::builder_with_provider(state.provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    // The ring provider supports TLS 1.3; this cannot fail.
                    .expect("ring supports TLS 1.3")
                    .with_client_cert_verifier(Arc::new(MeshClientVerifier(state.clone())))
                    .with_cert_resolver(Arc::new(CurrentCert(state.clone())));
                cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
                cfg.session_storage = Arc::new(NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
                Arc::new(cfg)
            })
            .clone()
    }

    /// The outbound rustls config for a server expected to be `expected_server_id`: presents
    /// our certificate, requires the server's chain to lead to the current bundle and its
    /// certificate to carry exactly that SPIFFE ID (URI SAN). TLS 1.3, ALPN `h2` and
    /// `http/1.1`, no resumption. Cached per expected ID. Connect with the SNI from
    /// [`crate::server_name_for`].
    pub fn client_config(&self, expected_server_id: &str) -> Arc<ClientConfig> {
        let mut cache = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(expected_server_id) {
            return c.clone();
        }
        if cache.len() >= MAX_CLIENT_CONFIGS {
            cache.clear();
        }
        let state = &self.inner.state;
        let verifier = SpiffeServerVerifier {
            state: state.clone(),
            expected: expected_server_id.to_string(),
        };
        let mut cfg = ClientConfig::builder_with_provider(state.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // The ring provider supports TLS 1.3; this cannot fail.
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentCert(state.clone())));
        cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        cfg.resumption = Resumption::disabled();
        let cfg = Arc::new(cfg);
        cache.insert(expected_server_id.to_string(), cfg.clone());
        cfg
    }

    /// Expiry of the current leaf certificate, seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.inner.state.current().not_after
    }

    /// The current leaf certificate's serial number, as colon-separated hex.
    pub fn serial(&self) -> String {
        self.inner.state.current().serial_hex.clone()
    }

    /// How many reloads applied new material.
    pub fn reloads(&self) -> u64 {
        self.inner.state.reloads.load(Ordering::Relaxed)
    }

    /// How many changed sets of files were rejected (each distinct broken content once).
    pub fn rejected_reloads(&self) -> u64 {
        self.inner.state.rejected.load(Ordering::Relaxed)
    }

    /// Re-reads the files now, as the watcher does; returns whether new material applied.
    pub async fn reload_now(&self) -> bool {
        self.inner.check().await
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id())
            .field("not_after", &self.not_after_unix())
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    /// Reads the files; when they differ from what was last tried, waits for them to settle,
    /// then validates and applies them or rejects them.
    async fn check(&self) -> bool {
        let mut files = match self.read().await {
            Some(f) => f,
            None => return false,
        };
        if self.seen(&files) {
            return false;
        }
        for _ in 0..10 {
            tokio::time::sleep(SETTLE).await;
            match self.read().await {
                Some(again) if again == files => break,
                Some(again) => files = again,
                None => return false,
            }
        }
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(files.clone());
        let state = &self.state;
        match Material::build(&self.cfg, &files, &state.provider, UnixTime::now()) {
            Ok(m) => {
                tracing::info!(
                    spiffe_id = %m.spiffe_id,
                    serial = %m.serial_hex,
                    not_after = m.not_after,
                    "identity reloaded"
                );
                *state.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
                state.reloads.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "identity reload rejected; keeping the last good material");
                state.rejected.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn seen(&self, files: &Files) -> bool {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            == Some(files)
    }

    async fn read(&self) -> Option<Files> {
        let cfg = self.cfg.clone();
        let read = tokio::task::spawn_blocking(move || Files::read(&cfg)).await;
        let mut last = self
            .last_read_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(Ok(files)) => {
                *last = None;
                Some(files)
            }
            Ok(Err(error)) => {
                let msg = error.to_string();
                if last.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(%error, "identity reload rejected; keeping the last good material");
                    self.state.rejected.fetch_add(1, Ordering::Relaxed);
                    *last = Some(msg);
                }
                None
            }
            Err(_) => None,
        }
    }
}

async fn watch_loop(
    inner: Weak<Inner>,
    wake: Arc<tokio::sync::Notify>,
    _fs_watcher: Option<notify::RecommendedWatcher>,
) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry_warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.check().await;
        let not_after = inner.state.current().not_after;
        let expired = UnixTime::now().as_secs() as i64 >= not_after;
        if expired && !expiry_warned {
            tracing::warn!(
                spiffe_id = %inner.state.current().spiffe_id,
                not_after,
                "identity certificate has expired; peers will refuse it until it is replaced"
            );
        }
        expiry_warned = expired;
    }
}

/// Watches the files' directories (a rename replaces the file, so watching the file itself
/// would lose it). Without a working watcher the periodic re-check still applies.
fn fs_watcher(
    cfg: &IdentityConfig,
    wake: Arc<tokio::sync::Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let names: Vec<PathBuf> = [&cfg.cert, &cfg.key, &cfg.trust_bundle]
        .iter()
        .filter_map(|p| p.file_name().map(PathBuf::from))
        .collect();
    let handler = move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let ours = ev
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)));
            if ours {
                wake.notify_one();
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(error) => {
            tracing::warn!(%error, "cannot watch identity files; re-checking every second");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = [&cfg.cert, &cfg.key, &cfg.trust_bundle]
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(%error, dir = %dir.display(), "cannot watch identity directory");
        }
    }
    Some(watcher)
}
