//! `weft-loadgen`: the load generator of weft's benchmark harness (`bench/run`), and a tiny
//! fallback backend for when nginx is not installed.
//!
//! `rate` is open-loop, in the manner of wrk2: a dedicated thread releases requests on a fixed
//! schedule (one every `1/rate` seconds) whatever the responses do, and each latency is
//! measured from the request's *scheduled* start, not from when a connection became free to
//! send it (more exactly, from its release by the scheduler thread, which is on time to within
//! the OS timer slack; that lateness is reported as `sched_late_*`). A stall therefore shows up in the tail of every request it delayed, instead of
//! silently lowering the offered rate (coordinated omission). HTTP/1.1 requests go to the
//! first idle connection of a fixed keep-alive pool (no pipelining); HTTP/2 requests each open
//! a stream on one of the connections at their scheduled time.
//!
//! `max` is closed-loop: `conns` connections (times `streams` concurrent streams for HTTP/2)
//! send back to back; it reports completed requests per second.
//!
//! `serve` answers every request with `200 ok` on an HTTP/1.1 and an h2c (prior knowledge)
//! listener and prints `{"h1":"ADDR","h2":"ADDR"}`.
//!
//! `proxy` is the least a proxy built on hyper can do: hyper's HTTP/1.1 or HTTP/2 server in
//! front of one hyper client connection per client connection, of the same protocol, with no
//! routing, pooling, header rewriting, metrics or error handling. It prints
//! `{"addr":"ADDR"}`. `bench/run` measures it next to weft to tell hyper's cost per request
//! from weft's own.
//!
//! Every mode prints one JSON object on stdout. Usage:
//! ```text
//! weft-loadgen rate  --addr A --proto h1|h2 --rate R --duration S [--warmup S] [--conns C] [--host H]
//! weft-loadgen max   --addr A --proto h1|h2 --duration S [--warmup S] [--conns C] [--streams M] [--host H]
//! weft-loadgen serve [--h1 ADDR] [--h2 ADDR]
//! weft-loadgen proxy --upstream ADDR --proto h1|h2 [--listen ADDR] [--preserve-case true]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Args = HashMap<String, String>;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = argv.first().cloned() else {
        eprintln!("usage: weft-loadgen rate|max|serve|proxy [--key value]...");
        std::process::exit(2);
    };
    let mut args = Args::new();
    let mut it = argv[1..].iter();
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            fail(&format!("unexpected argument {k}"));
        };
        let v = it
            .next()
            .unwrap_or_else(|| fail(&format!("--{k} needs a value")));
        args.insert(k.to_string(), v.clone());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let out = match mode.as_str() {
        "rate" => rt.block_on(rate(&args)),
        "max" => rt.block_on(max(&args)),
        "serve" => rt.block_on(serve(&args)),
        "proxy" => rt.block_on(proxy(&args)),
        other => fail(&format!("unknown mode {other}")),
    };
    println!("{out}");
}

fn fail(msg: &str) -> ! {
    eprintln!("weft-loadgen: {msg}");
    std::process::exit(2);
}

fn arg<T: std::str::FromStr>(args: &Args, key: &str, default: Option<T>) -> T {
    match args.get(key) {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| fail(&format!("bad --{key} {v}"))),
        None => default.unwrap_or_else(|| fail(&format!("--{key} is required"))),
    }
}

fn secs(args: &Args, key: &str, default: f64) -> Duration {
    Duration::from_secs_f64(arg(args, key, Some(default)))
}

// === clients ===

/// One HTTP connection that can send a request and wait for the whole response.
#[derive(Clone)]
enum Conn {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Empty<Bytes>>>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    async fn connect(addr: SocketAddr, h2: bool) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        if h2 {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = http1::handshake(io)
                .await
                .map_err(|e| format!("h1 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Conn::H1(Arc::new(tokio::sync::Mutex::new(send))))
        }
    }

    /// Sends one GET and reads the body; true on a 2xx with the whole body read.
    async fn get(&self, host: &str) -> bool {
        // HTTP/1.1 names the authority in Host; HTTP/2 in :authority, from the absolute URI
        // (a Host header as well would be a duplicate to servers such as nginx).
        let req = |uri: &str, host: Option<&str>| {
            let mut req = Request::get(uri);
            if let Some(host) = host {
                req = req.header(hyper::header::HOST, host);
            }
            req.body(Empty::<Bytes>::new())
                .expect("static request parts are valid")
        };
        let rsp = match self {
            Conn::H1(send) => {
                let mut send = send.lock().await;
                if send.ready().await.is_err() {
                    return false;
                }
                send.send_request(req("/", Some(host))).await
            }
            Conn::H2(send) => {
                let mut send = send.clone();
                if send.ready().await.is_err() {
                    return false;
                }
                send.send_request(req(&format!("http://{host}/"), None))
                    .await
            }
        };
        match rsp {
            Ok(rsp) => {
                let ok = rsp.status().is_success();
                ok && rsp.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Conn::H1(send) => send.try_lock().map(|s| s.is_closed()).unwrap_or(false),
            Conn::H2(send) => send.is_closed(),
        }
    }
}

struct Target {
    addr: SocketAddr,
    h2: bool,
    host: String,
    conns: usize,
}

impl Target {
    fn from(args: &Args) -> Target {
        let proto: String = arg(args, "proto", Some("h1".to_string()));
        Target {
            addr: arg(args, "addr", None),
            h2: match proto.as_str() {
                "h1" => false,
                "h2" => true,
                p => fail(&format!("--proto must be h1 or h2, not {p}")),
            },
            host: arg(args, "host", Some("bench.local".to_string())),
            conns: arg(args, "conns", Some(if proto == "h2" { 1 } else { 16 })),
        }
    }

    async fn connect_all(&self) -> Vec<Conn> {
        let mut conns = Vec::new();
        for _ in 0..self.conns {
            match Conn::connect(self.addr, self.h2).await {
                Ok(c) => conns.push(c),
                Err(e) => fail(&e),
            }
        }
        conns
    }
}

// === rate: open loop ===

async fn rate(args: &Args) -> String {
    let target = Arc::new(Target::from(args));
    let rate: f64 = arg(args, "rate", None);
    let warmup = secs(args, "warmup", 1.0);
    let duration = secs(args, "duration", 10.0);
    let conns = target.conns_checked(rate).await;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = ((warmup + duration).as_secs_f64() * rate).round() as u64;

    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let lateness: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(AtomicU64::new(0));

    // The schedule runs on its own OS thread so the runtime's 1 ms timer wheel cannot bunch
    // requests up; its own lateness (wake-up past the scheduled time) is reported too. The
    // warm-up cut uses release times, which are never earlier than the schedule.
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let late = lateness.clone();
    let scheduler = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // Latency counts from the release: the scheduler never waits for responses, so
            // its wake-up lateness (timer slack, ~50-70 µs) is the loader's, not the system's.
            let released = Instant::now().max(due);
            if due >= measure_from {
                let l = released.duration_since(due).as_micros() as u32;
                late.lock().expect("lock holder never panics").push(l);
            }
            if tx.send(released).is_err() {
                return;
            }
        }
    });

    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let record = move |due: Instant, ok: bool, lat: &Mutex<Vec<u32>>, errs: &AtomicU64| {
        if due < measure_from {
            return;
        }
        if ok {
            let us = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
            lat.lock().expect("lock holder never panics").push(us);
        } else {
            errs.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut tasks = Vec::new();
    if target.h2 {
        // One dispatcher spreads streams over the connections round robin.
        let (lat, errs, rx) = (latencies.clone(), errors.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut rx = rx.lock().await;
            let mut n = 0usize;
            let mut inflight = Vec::new();
            while let Some(due) = rx.recv().await {
                let conn = conns[n % conns.len()].clone();
                n += 1;
                let (lat, errs, host) = (lat.clone(), errs.clone(), target.host.clone());
                inflight.push(tokio::spawn(async move {
                    let ok = conn.get(&host).await;
                    record(due, ok, &lat, &errs);
                }));
                if inflight.len() > 4096 {
                    inflight.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                }
            }
            for t in inflight {
                let _ = t.await;
            }
        }));
    } else {
        // Each connection takes the next due request when idle: a request that finds every
        // connection busy waits, and that wait is part of its latency.
        for mut conn in conns {
            let (lat, errs, rx, target) = (
                latencies.clone(),
                errors.clone(),
                rx.clone(),
                target.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(due) = next else { return };
                    if conn.is_closed() {
                        match Conn::connect(target.addr, false).await {
                            Ok(c) => conn = c,
                            Err(_) => {
                                record(due, false, &lat, &errs);
                                continue;
                            }
                        }
                    }
                    let ok = conn.get(&target.host).await;
                    record(due, ok, &lat, &errs);
                }
            }));
        }
    }
    let deadline = start + warmup + duration + Duration::from_secs(10);
    for t in tasks {
        if tokio::time::timeout_at(deadline.into(), t).await.is_err() {
            break;
        }
    }
    let _ = scheduler.join();
    let mut lat = std::mem::take(&mut *latencies.lock().expect("lock holder never panics"));
    let mut late = std::mem::take(&mut *lateness.lock().expect("lock holder never panics"));
    let expected = (duration.as_secs_f64() * rate).round() as u64;
    let errors = errors.load(Ordering::Relaxed);
    let unfinished = expected.saturating_sub(lat.len() as u64 + errors);
    lat.sort_unstable();
    late.sort_unstable();
    format!(
        "{{\"mode\":\"rate\",\"rate\":{rate},\"ok\":{},\"errors\":{errors},\"unfinished\":{unfinished},\
         \"rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\
         \"sched_late_p50_us\":{},\"sched_late_p99_us\":{}}}",
        lat.len(),
        lat.len() as f64 / duration.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().copied().unwrap_or(0),
        pct(&late, 0.5),
        pct(&late, 0.99),
    )
}

impl Target {
    async fn conns_checked(&self, rate: f64) -> Vec<Conn> {
        if !(rate > 0.0) {
            fail("--rate must be positive");
        }
        self.connect_all().await
    }
}

/// The `q` quantile of sorted `v` (nearest rank), 0 when empty.
fn pct(v: &[u32], q: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// === max: closed loop ===

async fn max(args: &Args) -> String {
    let target = Arc::new(Target::from(args));
    let warmup = secs(args, "warmup", 1.0);
    let duration = secs(args, "duration", 5.0);
    let streams: usize = arg(args, "streams", Some(if target.h2 { 32 } else { 1 }));
    let conns = target.connect_all().await;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for conn in conns {
        for _ in 0..streams {
            let (conn, done, errors, stop, host) = (
                conn.clone(),
                done.clone(),
                errors.clone(),
                stop.clone(),
                target.host.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = conn.get(&host).await;
                    let now = Instant::now();
                    if now >= measure_from && now < end {
                        if ok { &done } else { &errors }.fetch_add(1, Ordering::Relaxed);
                    }
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
    }
    tokio::time::sleep_until(end.into()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let ok = done.load(Ordering::Relaxed);
    format!(
        "{{\"mode\":\"max\",\"ok\":{ok},\"errors\":{},\"rps\":{:.1}}}",
        errors.load(Ordering::Relaxed),
        ok as f64 / duration.as_secs_f64()
    )
}

// === serve: fallback backend ===

async fn serve(args: &Args) -> String {
    let h1 = TcpListener::bind(arg::<SocketAddr>(
        args,
        "h1",
        Some(([127, 0, 0, 1], 0).into()),
    ))
    .await
    .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let h2 = TcpListener::bind(arg::<SocketAddr>(
        args,
        "h2",
        Some(([127, 0, 0, 1], 0).into()),
    ))
    .await
    .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    println!(
        "{{\"h1\":\"{}\",\"h2\":\"{}\"}}",
        h1.local_addr().expect("bound listener has an address"),
        h2.local_addr().expect("bound listener has an address")
    );
    let ok = |_req: Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    };
    let svc = hyper::service::service_fn(ok);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = h2.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    while let Ok((tcp, _)) = h1.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
        );
    }
    String::new()
}

async fn proxy(args: &Args) -> String {
    let upstream: SocketAddr = arg(args, "upstream", None);
    let h2 = arg::<String>(args, "proto", Some("h1".into())) == "h2";
    let listen = arg::<SocketAddr>(args, "listen", Some(([127, 0, 0, 1], 0).into()));
    // HTTP/1.1 header names spelled as the client sent them, as weft keeps them: hyper's own
    // cost of that, for the comparison with weft.
    let preserve_case = arg::<bool>(args, "preserve-case", Some(false));
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    println!(
        "{{\"addr\":\"{}\"}}",
        listener.local_addr().expect("bound listener has an address")
    );
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            if h2 {
                let Ok((tx, conn)) =
                    http2::handshake(TokioExecutor::new(), TokioIo::new(up)).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let mut tx = tx.clone();
                    async move { tx.send_request(req).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            } else {
                let Ok((tx, conn)) = http1::Builder::new()
                    .preserve_header_case(preserve_case)
                    .handshake(TokioIo::new(up))
                    .await
                else {
                    return;
                };
                tokio::spawn(conn);
                // One request at a time per HTTP/1.1 connection: the lock is never contended.
                let tx = Arc::new(tokio::sync::Mutex::new(tx));
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move { tx.lock().await.send_request(req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .preserve_header_case(preserve_case)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }
        });
    }
    String::new()
}
