//! Conformance: gRPC's own interoperability suite, written by the gRPC project, through weft.
//! Debian's `ruby-grpc` ships the official interop client and server
//! (`src/ruby/pb/test/{client,server}.rb` inside the gem); every case this version supports
//! runs through one weft hop, and through a two-proxy mesh hop with mutual TLS.
//!
//! Needs `apt-get install ruby-grpc`; the test fails, naming it, rather than skip.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::pki::{start_inbound, Mesh, Pki, TRUST_DOMAIN, WEB};
use support::*;

/// The cases the gem's client supports one at a time (`all` does not work in this version).
const CASES: [&str; 11] = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "cancel_after_begin",
    "timeout_on_sleeping_server",
    "status_code_and_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
];

/// The interop scripts' directory inside the installed gem.
fn interop_dir() -> PathBuf {
    let base = PathBuf::from("/usr/lib/x86_64-linux-gnu/rubygems-integration");
    let found = std::fs::read_dir(&base).ok().and_then(|versions| {
        versions.flatten().find_map(|v| {
            std::fs::read_dir(v.path().join("gems"))
                .ok()?
                .flatten()
                .find_map(|g| {
                    let dir = g.path().join("src/ruby/pb/test");
                    let is_grpc = g.file_name().to_string_lossy().starts_with("grpc-");
                    (is_grpc && dir.join("client.rb").is_file()).then_some(dir)
                })
        })
    });
    found.unwrap_or_else(|| {
        panic!("gRPC's interop client and server are missing: apt-get install ruby-grpc")
    })
}

/// The interop server on a free port (it binds every address); waits until it listens.
async fn start_server() -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = tokio::process::Command::new("ruby")
        .arg(interop_dir().join("server.rb"))
        .arg(format!("--port={port}"))
        .arg("--use_tls=false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ruby server.rb");
    let up = eventually(Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    assert!(up.is_some(), "the interop server did not listen");
    (child, port)
}

/// Runs every case against `entry`; returns the ones that did not print `OK: <case>`.
async fn run_cases(entry: SocketAddr) -> Vec<String> {
    let mut failed = Vec::new();
    for case in CASES {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("ruby")
                .arg(interop_dir().join("client.rb"))
                .arg("--server_host=127.0.0.1")
                .arg(format!("--server_port={}", entry.port()))
                .arg("--use_tls=false")
                .arg(format!("--test_case={case}"))
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{case} did not finish"))
        .expect("run ruby client.rb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.contains(&format!("OK: {case}")) {
            failed.push(format!(
                "{case}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_interop_suite_passes_through_one_weft_hop() {
    let (_server, port) = start_server().await;
    // The client's authority is 127.0.0.1:<port>, so the name is /svc/127.0.0.1.
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n{}",
        router(
            "outbound",
            &format!("/svc => /$/inet/127.0.0.1/{port};"),
            &["service: {responseClassifier: grpc.default}"]
        )
    );
    let weft = Weft::start(bin(), &config).await;
    let failed = run_cases(weft.router("outbound")).await;
    assert!(failed.is_empty(), "{failed:#?}\n{}", weft.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_interop_suite_passes_through_a_mesh_hop_with_mutual_tls() {
    let (_server, port) = start_server().await;
    let pki = Pki::new(TRUST_DOMAIN);
    pki.issue("books", support::pki::BOOKS);
    let inbound = start_inbound(&pki, port, "").await;
    // Every name goes to the inbound proxy (the fs namer's file `books`).
    let mesh = Mesh::around_with_dtab(pki, inbound, WEB, "/svc => /#/fs/books;").await;
    let failed = run_cases(mesh.outbound.router("outbound")).await;
    assert!(
        failed.is_empty(),
        "{failed:#?}\n--- outbound ---\n{}\n--- inbound ---\n{}",
        mesh.outbound.stderr(),
        mesh.inbound.stderr()
    );
}
