//! The `dnssrv` namer against a real DNS server: BIND 9's `named` (Debian packages `bind9`
//! and `bind9-dnsutils`; see `weft_test::Named`), authoritative for `weft.test` on an
//! ephemeral port of 127.0.0.1, with records changed live by `nsupdate` (RFC 2136 dynamic
//! updates). Every TTL in the zone is 1 s, so the namer re-resolves about every second.
//!
//! Misbehaviour named cannot produce (malformed replies, a server that never answers) comes
//! from a small UDP relay in front of it ([`Relay`]) that forwards queries and replies
//! untouched, or answers garbage, or drops queries, on cue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use weft_config::{DiscoveryBackoff, DnsSrvConfig};
use weft_discovery::dnssrv::{DnsSrvNamer, MAX_ENDPOINTS, ZERO_WEIGHT};
use weft_naming::{Address, NamerState, NamerStatus, Path, Resolution};
use weft_test::Named;

/// How long anything may take to show (generous: the resolver's timeout is 5 s per query).
const WITHIN: Duration = Duration::from_secs(40);
const WEB: &str = "_http._tcp.web.weft.test";

fn namer_for(dns: SocketAddr) -> DnsSrvNamer {
    let config = DnsSrvConfig {
        dns_hosts: vec![dns],
        min_ttl: Duration::from_millis(200),
        max_ttl: Duration::from_secs(2),
        backoff: DiscoveryBackoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(500),
        },
    };
    DnsSrvNamer::new(&config, &Path::read("/#/dnssrv").unwrap()).unwrap()
}

fn status(namer: &DnsSrvNamer) -> NamerStatus {
    weft_naming::Namer::status(namer).expect("dnssrv has a status")
}

fn lookup(namer: &DnsSrvNamer, srv: &str) -> watch::Receiver<Resolution> {
    let path = Path::from_labels([srv.as_bytes()]);
    weft_naming::Namer::lookup(namer, &path)
}

/// `(address, weight)` of a bound resolution, sorted; `None` for anything else.
fn endpoints(r: &Resolution) -> Option<Vec<(String, f64)>> {
    match r {
        Resolution::Bound(b) => Some(
            b.addrs
                .iter()
                .map(|a: &Address| (a.addr.to_string(), a.weight))
                .collect(),
        ),
        _ => None,
    }
}

/// The ports of a bound resolution's endpoints, sorted.
fn ports(r: &Resolution) -> Vec<u16> {
    let mut p: Vec<u16> = match r {
        Resolution::Bound(b) => b.addrs.iter().map(|a| a.addr.port()).collect(),
        _ => vec![],
    };
    p.sort_unstable();
    p
}

/// Waits until the resolution satisfies `ok`; panics with the last one and named's log.
async fn until(
    rx: &mut watch::Receiver<Resolution>,
    named: &Named,
    what: &str,
    ok: impl FnMut(&Resolution) -> bool,
) -> Resolution {
    let got = match tokio::time::timeout(WITHIN, rx.wait_for(ok)).await {
        Ok(Ok(r)) => Some(r.clone()),
        Ok(Err(_)) => panic!("{what}: the namer dropped the name"),
        Err(_) => None,
    };
    match got {
        Some(r) => r,
        None => panic!(
            "{what}: not within {WITHIN:?}; last {:?}\nnamed log:\n{}",
            *rx.borrow(),
            named.log()
        ),
    }
}

/// Polls `ok` on the namer's status every 20 ms.
async fn until_status(namer: &DnsSrvNamer, what: &str, mut ok: impl FnMut(&NamerStatus) -> bool) {
    let s = status(namer);
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !ok(&s) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WITHIN:?}; {:?}",
            s.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn instances_added_and_removed_flow() {
    let named = Named::start("web1 IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 18001 web1\n").await;
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    let mut second = lookup(&namer, WEB);
    assert_eq!(status(&namer).snapshot().watched, 1, "one watch per name");
    let r = until(&mut rx, &named, "first answer", |r| ports(r) == [18001]).await;
    let Resolution::Bound(b) = &r else {
        unreachable!()
    };
    assert_eq!(b.id.to_string(), format!("/#/dnssrv/{WEB}"));
    assert_eq!(endpoints(&r).unwrap(), [("127.0.0.1:18001".into(), 10.0)]);
    until(&mut second, &named, "second lookup", |r| {
        ports(r) == [18001]
    })
    .await;

    named
        .update(&format!(
            "update add web2.weft.test 1 IN A 127.0.0.2\n\
             update add {WEB} 1 IN SRV 0 10 18002 web2.weft.test."
        ))
        .await;
    let r = until(&mut rx, &named, "instance added", |r| {
        ports(r) == [18001, 18002]
    })
    .await;
    assert_eq!(
        endpoints(&r).unwrap(),
        [
            ("127.0.0.1:18001".into(), 10.0),
            ("127.0.0.2:18002".into(), 10.0)
        ]
    );

    named
        .update(&format!(
            "update delete {WEB} SRV 0 10 18001 web1.weft.test."
        ))
        .await;
    until(&mut rx, &named, "instance removed", |r| ports(r) == [18002]).await;
    let snap = status(&namer).snapshot();
    assert_eq!(snap.state, NamerState::Ok, "{snap:?}");
    assert_eq!(snap.errors, 0, "{snap:?}");
    assert!(snap.updates >= 3, "{snap:?}");
    assert!(snap.backend.contains(&named.addr().to_string()), "{snap:?}");
}

#[tokio::test]
async fn server_down_keeps_the_last_set_and_recovery_flows() {
    let mut named =
        Named::start("web1 IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 18001 web1\n").await;
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    let good = until(&mut rx, &named, "first answer", |r| ports(r) == [18001]).await;

    named.stop().await;
    until_status(&namer, "stale after the server stopped", |s| {
        let snap = s.snapshot();
        snap.state == NamerState::Stale && snap.errors >= 2 && snap.last_error.is_some()
    })
    .await;
    assert_eq!(*rx.borrow(), good, "the last good set stays bound");
    assert!(
        !rx.has_changed().unwrap(),
        "no update while the server is down"
    );

    named.restart().await;
    until_status(&namer, "ok after the restart", |s| {
        s.state() == NamerState::Ok
    })
    .await;
    named
        .update(&format!(
            "update add {WEB} 1 IN SRV 0 10 18003 web1.weft.test."
        ))
        .await;
    until(&mut rx, &named, "a change after the restart", |r| {
        ports(r) == [18001, 18003]
    })
    .await;
}

#[tokio::test]
async fn lowest_priority_and_weights_are_honoured() {
    let named = Named::start(
        "web1 IN A 127.0.0.1\n\
         web2 IN A 127.0.0.2\n\
         web3 IN A 127.0.0.3\n\
         web3 IN A 127.0.0.4\n\
         _http._tcp.web IN SRV 10 30 18001 web1\n\
         _http._tcp.web IN SRV 10 0 18002 web2\n\
         _http._tcp.web IN SRV 10 20 18003 web3\n\
         _http._tcp.web IN SRV 20 50 18009 web1\n",
    )
    .await;
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    let r = until(&mut rx, &named, "priority 10", |r| endpoints(r).is_some()).await;
    assert_eq!(
        endpoints(&r).unwrap(),
        [
            ("127.0.0.1:18001".into(), 30.0),
            ("127.0.0.2:18002".into(), ZERO_WEIGHT),
            ("127.0.0.3:18003".into(), 10.0),
            ("127.0.0.4:18003".into(), 10.0),
        ],
        "weight 0 is small; a target's weight is split over its addresses"
    );

    // The preferred records go away: the fallback priority takes over.
    named
        .update(&format!(
            "update delete {WEB} SRV\nupdate add {WEB} 1 IN SRV 20 50 18009 web1.weft.test."
        ))
        .await;
    let r = until(&mut rx, &named, "priority 20", |r| ports(r) == [18009]).await;
    assert_eq!(endpoints(&r).unwrap(), [("127.0.0.1:18009".into(), 50.0)]);
}

#[tokio::test]
async fn targets_are_looked_up_without_additional_data() {
    let named = Named::start_minimal_responses(
        "web1 IN A 127.0.0.1\n\
         web6 IN AAAA ::1\n\
         web6 IN A 127.0.0.6\n\
         noaddr IN TXT \"no address\"\n\
         _http._tcp.web IN SRV 0 10 18001 web1\n\
         _http._tcp.web IN SRV 0 10 18006 web6\n\
         _http._tcp.web IN SRV 0 10 18009 noaddr\n",
    )
    .await;
    let out = tokio::process::Command::new("dig")
        .args(["+noall", "+additional", "-p"])
        .arg(named.addr().port().to_string())
        .args(["@127.0.0.1", "SRV", WEB])
        .output()
        .await
        .expect("run dig");
    let additional = String::from_utf8_lossy(&out.stdout);
    assert!(
        !additional.contains("IN\tA"),
        "the answer must carry no addresses for this test: {additional}"
    );
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    let r = until(&mut rx, &named, "targets looked up", |r| {
        endpoints(r).is_some()
    })
    .await;
    assert_eq!(
        endpoints(&r).unwrap(),
        [
            ("127.0.0.1:18001".into(), 10.0),
            ("127.0.0.6:18006".into(), 5.0),
            ("[::1]:18006".into(), 5.0),
        ],
        "a target without addresses gives none"
    );
    named
        .update("update delete web1.weft.test A\nupdate add web1.weft.test 1 IN A 127.0.0.9")
        .await;
    until(&mut rx, &named, "a target's new address", |r| {
        endpoints(r).is_some_and(|e| e.iter().any(|(a, _)| a == "127.0.0.9:18001"))
    })
    .await;
    assert_eq!(status(&namer).snapshot().errors, 0);
}

#[tokio::test]
async fn nxdomain_is_neg_and_a_created_name_binds() {
    let named = Named::start("web1 IN A 127.0.0.1\n").await;
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    until(&mut rx, &named, "NXDOMAIN", |r| *r == Resolution::Neg).await;
    // An existing name with other record types only (NOERROR, no SRV) is Neg too.
    let mut a_only = lookup(&namer, "web1.weft.test");
    until(&mut a_only, &named, "no SRV", |r| *r == Resolution::Neg).await;
    assert_eq!(status(&namer).state(), NamerState::Ok, "DNS answered");

    named
        .update(&format!(
            "update add {WEB} 1 IN SRV 0 1 18001 web1.weft.test."
        ))
        .await;
    until(&mut rx, &named, "created", |r| ports(r) == [18001]).await;
    // A target of "." is "decidedly not available" (RFC 2782): the name exists, empty.
    named
        .update(&format!(
            "update delete {WEB} SRV\nupdate add {WEB} 1 IN SRV 0 0 0 ."
        ))
        .await;
    until(&mut rx, &named, "no target", |r| {
        endpoints(r).is_some_and(|e| e.is_empty())
    })
    .await;
    named.update(&format!("update delete {WEB} SRV")).await;
    until(&mut rx, &named, "removed", |r| *r == Resolution::Neg).await;
    assert_eq!(status(&namer).snapshot().errors, 0);
}

#[tokio::test]
async fn a_huge_answer_is_cut_and_counted() {
    let named = Named::start("web1 IN A 127.0.0.1\n").await;
    // 1,500 records: about 30 KB, over TCP (a UDP answer is truncated, and the resolver
    // retries over TCP).
    for batch in 0..6 {
        let adds: String = (0..250)
            .map(|i| {
                let port = 20_000 + batch * 250 + i;
                format!("update add {WEB} 1 IN SRV 0 1 {port} web1.weft.test.\n")
            })
            .collect();
        named.update(&adds).await;
    }
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    let r = until(&mut rx, &named, "cut answer", |r| endpoints(r).is_some()).await;
    assert_eq!(ports(&r).len(), MAX_ENDPOINTS);
    let snap = status(&namer).snapshot();
    assert!(snap.errors >= 1, "the cut is counted: {snap:?}");
    assert_eq!(snap.state, NamerState::Ok, "the answer is used: {snap:?}");
}

/// What the relay does with each query.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Mode {
    Forward = 0,
    Garbage = 1,
    Silent = 2,
}

/// A UDP relay in front of named: forwards each query and its reply untouched, or answers
/// with a reply that claims one answer record but carries 3 bytes of it (the query's id, so
/// the resolver reads it), or drops the query.
struct Relay {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let m = mode.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = buf[..n].to_vec();
                let (socket, mode) = (socket.clone(), m.load(Ordering::Relaxed));
                tokio::spawn(async move {
                    if mode == Mode::Garbage as u8 && query.len() >= 12 {
                        let mut reply = query[..12].to_vec();
                        reply[2] = 0x84; // QR, AA
                        reply[3] = 0x00;
                        reply[4..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
                        reply.extend_from_slice(&[0xc0, 0x0c, 0x00]);
                        let _ = socket.send_to(&reply, from).await;
                    } else if mode == Mode::Forward as u8 {
                        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                        let _ = up.send_to(&query, upstream).await;
                        let mut buf = vec![0u8; 65_536];
                        let got = tokio::time::timeout(Duration::from_secs(5), up.recv(&mut buf));
                        if let Ok(Ok(n)) = got.await {
                            let _ = socket.send_to(&buf[..n], from).await;
                        }
                    }
                });
            }
        });
        Relay { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn malformed_and_missing_replies_keep_the_last_set() {
    let named = Named::start("web1 IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 18001 web1\n").await;
    let relay = Relay::start(named.addr()).await;
    let namer = namer_for(relay.addr);
    let mut rx = lookup(&namer, WEB);
    let good = until(&mut rx, &named, "first answer", |r| ports(r) == [18001]).await;

    for (mode, what) in [(Mode::Garbage, "malformed"), (Mode::Silent, "unanswered")] {
        relay.set(mode);
        let before = status(&namer).snapshot().errors;
        until_status(&namer, what, |s| {
            s.state() == NamerState::Stale && s.snapshot().errors >= before + 2
        })
        .await;
        assert_eq!(*rx.borrow(), good, "{what}: the last good set stays bound");
        relay.set(Mode::Forward);
        until_status(&namer, "recovered", |s| s.state() == NamerState::Ok).await;
    }

    // Before any good answer, a failing server makes the name Failed, not Neg.
    relay.set(Mode::Garbage);
    let mut other = lookup(&namer, "_http._tcp.other.weft.test");
    until(&mut other, &named, "failed", |r| {
        matches!(r, Resolution::Failed(m) if m.contains("/#/dnssrv/_http._tcp.other.weft.test"))
    })
    .await;
}

#[tokio::test]
async fn the_watch_ends_when_unwatched() {
    let named = Named::start("web1 IN A 127.0.0.1\n_http._tcp.web IN SRV 0 10 18001 web1\n").await;
    let namer = namer_for(named.addr());
    let mut rx = lookup(&namer, WEB);
    until(&mut rx, &named, "first answer", |r| ports(r) == [18001]).await;
    drop(rx);
    until_status(&namer, "unwatched", |s| s.snapshot().watched == 0).await;
    // Watching again starts a new watch that answers at once from DNS.
    let mut rx = lookup(&namer, WEB);
    until(&mut rx, &named, "watched again", |r| ports(r) == [18001]).await;
}
