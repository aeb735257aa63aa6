//! [`ControlStub`]: the control plane's resolution service in the test process, for proxies
//! configured with `interpreter: {kind: control}`.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_naming::{Dtab, FsNamer, Interpreter, Namer, Path};
use weft_resolve::{MemoryDtabs, ResolveService};

/// The resolution service of `weft control` on an ephemeral loopback port, with namespace
/// dtabs held in memory and an `fs` namer at `/#/fs` over a directory (a [`Disco`]'s path).
///
/// [`Disco`]: crate::Disco
pub struct ControlStub {
    addr: SocketAddr,
    fs_root: PathBuf,
    dtabs: Arc<MemoryDtabs>,
    service: ResolveService,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ControlStub {
    /// Starts serving on a free loopback port.
    pub async fn start(fs_root: &FsPath) -> ControlStub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind control");
        ControlStub::serve(listener, fs_root, Arc::new(MemoryDtabs::new()))
    }

    fn serve(listener: TcpListener, fs_root: &FsPath, dtabs: Arc<MemoryDtabs>) -> ControlStub {
        let addr = listener.local_addr().expect("control address");
        let namer: Arc<dyn Namer> = Arc::new(FsNamer::new(fs_root.to_path_buf()));
        let prefix = Path::read("/#/fs").expect("a valid path");
        let service = ResolveService::new(dtabs.clone(), Interpreter::new(vec![(prefix, namer)]));
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.clone().serve(listener, stop.clone()));
        ControlStub {
            addr,
            fs_root: fs_root.to_path_buf(),
            dtabs,
            service,
            stop,
            task: Some(task),
        }
    }

    /// Where proxies reach it (`interpreter.addresses`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates or replaces namespace `namespace`'s dtab.
    ///
    /// # Panics
    /// When `text` is not a dtab.
    pub fn set_dtab(&self, namespace: &str, text: &str) {
        let dtab = Dtab::read(text).unwrap_or_else(|e| panic!("dtab {text:?}: {e}"));
        self.dtabs.set(namespace, dtab);
    }

    /// The service (its watched names and counters).
    pub fn service(&self) -> &ResolveService {
        &self.service
    }

    /// Stops it as a killed process would: the listener closes and every connection drops.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts it again on the same address with the same namespaces (stopping it first if
    /// it runs), as a control instance that comes back.
    ///
    /// # Panics
    /// When the address cannot be bound again.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("bind control again on {}: {e}", self.addr));
        *self = ControlStub::serve(listener, &self.fs_root.clone(), self.dtabs.clone());
    }
}
