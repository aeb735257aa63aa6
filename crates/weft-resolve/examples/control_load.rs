//! Load for `weft control`'s resolution service: `PROXIES` clients (each what one proxy's
//! router opens: one HTTP/2 connection, one stream per name) binding `NAMES` names each under
//! the namespace `default`, held open for `SECS` seconds. Prints how many bindings settled.
//! Measure the control plane's memory meanwhile (see docs/benchmarks.md, "Control plane").
//!
//! `cargo run --release -p weft-resolve --example control_load -- ADDR PROXIES NAMES SECS`

use std::time::Duration;

use tokio::time::Instant;

use weft_naming::{BindState, Dtab, Path};
use weft_resolve::{ControlInterpreter, ControlSettings};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, proxies, names, secs] = args.as_slice() else {
        eprintln!("usage: control_load ADDR PROXIES NAMES SECS");
        std::process::exit(2);
    };
    let parse = |s: &str| s.parse::<usize>().expect("a number");
    let (proxies, names, secs) = (parse(proxies), parse(names), parse(secs));
    let started = Instant::now();
    let mut bindings = Vec::with_capacity(proxies * names);
    let mut clients = Vec::with_capacity(proxies);
    for _ in 0..proxies {
        let settings = ControlSettings::new(vec![addr.clone()], "default");
        let control = ControlInterpreter::new(settings).expect("control interpreter");
        let interpreter = control.interpreter();
        for n in 0..names {
            let path = Path::read(&format!("/svc/name{n}")).expect("path");
            bindings.push(interpreter.bind(Dtab::empty(), path));
        }
        clients.push(control);
    }
    let mut settled = 0;
    for b in &bindings {
        let mut state = b.state();
        let done = state.wait_for(|s| !matches!(s, BindState::Pending));
        if tokio::time::timeout(Duration::from_secs(60), done)
            .await
            .is_ok()
        {
            settled += 1;
        }
    }
    println!(
        "{{\"proxies\":{proxies},\"names\":{names},\"settled\":{settled},\"settle_secs\":{:.2}}}",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(secs as u64)).await;
    drop(bindings);
    drop(clients);
}
