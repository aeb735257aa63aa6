//! End to end: the `dnssrv` namer in the built binary against a real DNS server, BIND 9's
//! `named` (Debian packages `bind9` and `bind9-dnsutils`; `weft_test::Named`), whose SRV
//! records are changed live with `nsupdate` while requests flow. Every TTL in the zone is
//! 1 s; the namer's `maxTtl` is 2 s.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;
use weft_test::Named;

const WEB: &str = "_http._tcp.web.weft.test";
/// How long a DNS change may take to show in where traffic goes.
const WITHIN: Duration = Duration::from_secs(30);

/// `workers` clients sending GETs for `web` back to back through weft until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    workers: JoinSet<Vec<String>>,
}

impl Load {
    fn start(weft: &Weft, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for w in 0..workers {
            let (client, stop, failed) = (weft.http1("outbound"), stop.clone(), failed.clone());
            set.spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let error = match client.get("web", "/").await {
                        Ok(r) if r.status == 200 && r.upstream().is_some() => continue,
                        Ok(r) => format!(
                            "worker {w}: {} {:?} {}",
                            r.status,
                            r.proxy_error(),
                            r.text()
                        ),
                        Err(e) => format!("worker {w}: {e}"),
                    };
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.push(error);
                }
                errors
            });
        }
        Load {
            stop,
            failed,
            workers: set,
        }
    }

    /// Stops the workers; panics if any request failed.
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        while let Some(done) = self.workers.join_next().await {
            errors.extend(done.expect("a load worker panicked"));
        }
        assert!(errors.is_empty(), "failed requests: {errors:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_srv_records_added_and_removed() {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let named = Named::start(&format!(
        "a IN A 127.0.0.1\nb IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 {} a\n",
        a.port()
    ))
    .await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: dnssrv, prefix: /#/dnssrv, dnsHosts: ['{}'], maxTtl: 2s}}\n\
         routers:\n{}",
        named.addr(),
        router("outbound", &format!("/svc/web => /#/dnssrv/{WEB};"), &[])
    );
    let weft = Weft::start(bin(), &yaml).await;
    let load = Load::start(&weft, 2);
    let reached = eventually(WITHIN, || async { (a.requests() > 20).then_some(()) }).await;
    assert!(reached.is_some(), "no traffic reached a: {}", weft.stderr());

    named
        .update(&format!(
            "update add {WEB} 1 IN SRV 0 10 {} b.weft.test.",
            b.port()
        ))
        .await;
    let reached = eventually(WITHIN, || async { (b.requests() > 20).then_some(()) }).await;
    assert!(
        reached.is_some(),
        "traffic did not reach the added instance b; DNS says {}",
        named.dig(WEB, "SRV").await
    );

    named
        .update(&format!(
            "update delete {WEB} SRV 0 10 {} a.weft.test.",
            a.port()
        ))
        .await;
    // Traffic has stopped reaching a once a window of requests goes to b alone.
    let gone = eventually(WITHIN, || async {
        let (a0, b0) = (a.requests(), b.requests());
        tokio::time::sleep(Duration::from_millis(500)).await;
        (a.requests() == a0 && b.requests() >= b0 + 20).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "traffic still reaches the removed instance a ({} requests); DNS says {}",
        a.requests(),
        named.dig(WEB, "SRV").await
    );
    let a_final = a.requests();
    let b_before = b.requests();
    let more = eventually(WITHIN, || async {
        (b.requests() >= b_before + 50).then_some(())
    })
    .await;
    assert!(more.is_some(), "traffic stopped flowing to b");
    assert_eq!(a.requests(), a_final, "a got traffic after it was removed");
    assert_eq!(load.failed.load(Ordering::Relaxed), 0);
    load.stop().await;
}

/// The DNS server goes away while requests flow: none fails (routing continues on the last
/// records), `/namers.json` says stale and `weft check` fails naming the server; once it is
/// back the namer is ok and the check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_outage_keeps_routing_and_check_names_the_server() {
    let a = Upstream::ok("a").await;
    let mut named = Named::start(&format!(
        "a IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 {} a\n",
        a.port()
    ))
    .await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: dnssrv, prefix: /#/dnssrv, dnsHosts: ['{}'], maxTtl: 1s, \
         backoff: {{min: 100ms, max: 500ms}}}}\n\
         routers:\n{}",
        named.addr(),
        router("outbound", &format!("/svc/web => /#/dnssrv/{WEB};"), &[])
    );
    let weft = Weft::start(bin(), &yaml).await;
    let load = Load::start(&weft, 2);
    let reached = eventually(WITHIN, || async { (a.requests() > 20).then_some(()) }).await;
    assert!(reached.is_some(), "no traffic reached a: {}", weft.stderr());
    namers::namer_in_state(&weft, "/#/dnssrv", "ok", WITHIN).await;
    namers::assert_check_passes(&weft, "/#/dnssrv").await;

    named.stop().await;
    let stale = namers::namer_in_state(&weft, "/#/dnssrv", "stale", Duration::from_secs(60)).await;
    assert!(stale["errors"].as_u64() >= Some(1), "{stale:#}");
    let backend = format!("dns {}", named.addr());
    namers::assert_check_names_backend(&weft, "/#/dnssrv", "dnssrv", &backend).await;
    let during = a.requests();
    let flowing = eventually(WITHIN, || async {
        (a.requests() >= during + 20).then_some(())
    })
    .await;
    assert!(flowing.is_some(), "traffic stopped during the outage");

    named.restart().await;
    namers::namer_in_state(&weft, "/#/dnssrv", "ok", WITHIN).await;
    namers::assert_check_passes(&weft, "/#/dnssrv").await;
    assert_eq!(load.failed.load(Ordering::Relaxed), 0);
    load.stop().await;
}
