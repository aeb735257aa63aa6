//! A real nginx (`/usr/sbin/nginx`, or `$WEFT_TEST_NGINX`) as a child process, for tests that
//! need a widely deployed server as it behaves out of the box: it speaks HTTP/1.1 only unless
//! told otherwise, and answers the HTTP/2 preface with `HTTP/1.1 400`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// How long nginx may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a free port (another process may take the one found between its release and
/// nginx binding it).
const PORT_ATTEMPTS: usize = 3;

/// One nginx process in the foreground (`daemon off`, `master_process off`: a single
/// process), listening on an ephemeral port of 127.0.0.1, with its prefix, config, pid file
/// and error log in a temporary directory. Killed on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with one `server` listening on a free port whose `location /` is
    /// `location` (nginx directives, e.g. `return 200 "hi\n";`), and waits (polling) until it
    /// accepts connections. Panics, with nginx's error log, if it does not.
    pub async fn start(location: &str) -> Nginx {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().expect("nginx tempdir");
            let addr = free_addr();
            let conf = config(dir.path(), addr, location);
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let child = Command::new(binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
            let mut nginx = Nginx { child, addr, dir };
            if nginx.wait_listening().await {
                return nginx;
            }
            last_log = nginx.error_log();
        }
        panic!("nginx did not start listening within {START_TIMEOUT:?}:\n{last_log}");
    }

    /// The listening address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `fs` namer line for this server: `127.0.0.1 PORT\n`.
    pub fn fs_line(&self) -> String {
        format!("{} {}\n", self.addr.ip(), self.addr.port())
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Polls until nginx accepts a connection (true) or exits or times out (false).
    async fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    std::env::var_os("WEFT_TEST_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    l.local_addr().expect("local addr")
}

fn config(prefix: &Path, addr: SocketAddr, location: &str) -> String {
    let p = prefix.display();
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|k| format!("    {k}_temp_path {p}/{k};\n"))
        .collect();
    format!(
        "master_process off;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         {temps}\
         \x20   server {{\n\
         \x20       listen {addr};\n\
         \x20       location / {{ {location} }}\n\
         \x20   }}\n\
         }}\n"
    )
}
