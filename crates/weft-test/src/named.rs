//! A real DNS server: BIND 9's `named` (Debian package `bind9`), authoritative for the zone
//! `weft.test` on an ephemeral port of 127.0.0.1, changed live with `nsupdate` (package
//! `bind9-dnsutils`, which also brings `dig`).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long named may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at a free port (another process may take the one found between its release and
/// named binding it).
const PORT_ATTEMPTS: usize = 3;
/// The zone named serves.
const ZONE: &str = "weft.test";

/// One `named -g` process (foreground, logging to stderr, which goes to `named.log`),
/// authoritative for `weft.test` with dynamic updates allowed from 127.0.0.1 and every TTL
/// (including the SOA's negative-caching TTL) 1 second, so that clients re-resolve quickly.
/// Its config, zone file and journal live in a temporary directory, so a restart on the same
/// port ([`Named::restart`]) serves the zone as last updated. Killed on drop.
///
/// Panics naming the Debian package when `named`, `nsupdate` or `dig` is missing: tests that
/// use it must fail, not skip, on a machine without them.
#[derive(Debug)]
pub struct Named {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Named {
    /// Starts named on a free port with the zone's records `records` (zone file lines
    /// relative to the zone, e.g. `web1 IN A 127.0.0.1` or
    /// `_http._tcp.web IN SRV 0 10 8080 web1`), and waits until it answers.
    pub async fn start(records: &str) -> Named {
        Named::start_with(records, "").await
    }

    /// Like [`Named::start`], but answers carry no additional section (BIND's
    /// `minimal-responses yes`): a client must look SRV targets up itself.
    pub async fn start_minimal_responses(records: &str) -> Named {
        Named::start_with(records, "minimal-responses yes;").await
    }

    async fn start_with(records: &str, options: &str) -> Named {
        for bin in [named_bin(), nsupdate_bin(), dig_bin()] {
            if !bin.exists() {
                panic!(
                    "{} not found: install the Debian packages `bind9` and `bind9-dnsutils` \
                     (apt-get install -y bind9 bind9-dnsutils)",
                    bin.display()
                );
            }
        }
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().expect("named tempdir");
            let port = free_port();
            std::fs::write(
                dir.path().join("named.conf"),
                config(dir.path(), port, options),
            )
            .expect("write named.conf");
            std::fs::write(dir.path().join("weft.test.zone"), zone(records))
                .expect("write the zone file");
            let mut named = Named {
                child: None,
                port,
                dir,
            };
            if named.run().await {
                return named;
            }
            last_log = named.log();
        }
        panic!("named did not answer within {START_TIMEOUT:?}:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, for a namer's `dnsHosts`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Applies `commands` (nsupdate lines such as
    /// `update add _http._tcp.web.weft.test 1 IN SRV 0 10 8080 web1.weft.test`) as one
    /// dynamic update (RFC 2136). Panics if nsupdate fails.
    pub async fn update(&self, commands: &str) {
        let script = format!(
            "server 127.0.0.1 {}\nzone {ZONE}\n{}\nsend\n",
            self.port,
            commands.trim()
        );
        let mut child = Command::new(nsupdate_bin())
            .arg("-t")
            .arg("5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run nsupdate");
        let mut stdin = child.stdin.take().expect("nsupdate stdin");
        stdin
            .write_all(script.as_bytes())
            .await
            .expect("write to nsupdate");
        drop(stdin);
        let out = child.wait_with_output().await.expect("nsupdate output");
        assert!(
            out.status.success(),
            "nsupdate failed ({}):\n{script}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `dig +short` for `name` and record type `rtype` (e.g. `SRV`), for failure messages.
    pub async fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new(dig_bin())
            .args(["+short", "+time=1", "+tries=1", "-p"])
            .arg(self.port.to_string())
            .args(["@127.0.0.1", rtype, name])
            .output()
            .await
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops named (SIGKILL) and waits for it to exit; queries then go unanswered.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts named again on the same port, with the zone as last updated, and waits until it
    /// answers. Panics if it does not.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.run().await,
            "named did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// What named has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Starts the process and polls (SOA queries with dig) until it answers (true), exits or
    /// times out (false; the process is then stopped).
    async fn run(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("named.log"))
            .expect("open named.log");
        let child = Command::new(named_bin())
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(self.dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("named.log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", named_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                break;
            }
            if self.dig(ZONE, "SOA").await.contains("ns.weft.test.") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop().await;
        false
    }
}

fn named_bin() -> PathBuf {
    std::env::var_os("WEFT_TEST_NAMED").map_or_else(|| "/usr/sbin/named".into(), PathBuf::from)
}

fn nsupdate_bin() -> PathBuf {
    PathBuf::from("/usr/bin/nsupdate")
}

fn dig_bin() -> PathBuf {
    PathBuf::from("/usr/bin/dig")
}

/// A port of 127.0.0.1 free for both UDP and TCP a moment ago.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP for a free port");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn config(dir: &Path, port: u16, options: &str) -> String {
    let d = dir.display();
    // `controls {}`: no rndc channel (it would take port 953); no recursion, no DNSSEC; no
    // cap on the records of one name and type (9.18.28 and later refuse more than 100).
    format!(
        "options {{\n\
         \x20   directory \"{d}\";\n\
         \x20   listen-on port {port} {{ 127.0.0.1; }};\n\
         \x20   listen-on-v6 {{ none; }};\n\
         \x20   pid-file none;\n\
         \x20   session-keyfile \"{d}/session.key\";\n\
         \x20   recursion no;\n\
         \x20   dnssec-validation no;\n\
         \x20   notify no;\n\
         \x20   max-records-per-type 0;\n\
         \x20   {options}\n\
         }};\n\
         controls {{ }};\n\
         zone \"{ZONE}\" {{\n\
         \x20   type primary;\n\
         \x20   file \"{d}/weft.test.zone\";\n\
         \x20   allow-update {{ 127.0.0.1; }};\n\
         }};\n"
    )
}

fn zone(records: &str) -> String {
    format!(
        "$ORIGIN {ZONE}.\n\
         $TTL 1\n\
         @ IN SOA ns.{ZONE}. admin.{ZONE}. 1 1 1 1 1\n\
         @ IN NS ns.{ZONE}.\n\
         ns IN A 127.0.0.1\n\
         {records}\n"
    )
}
