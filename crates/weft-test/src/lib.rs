//! Test harness for weft (dev only).
//!
//! It owns what end-to-end tests need around the proxy and nothing of the proxy itself:
//! - [`Upstream`]: a real HTTP/1.1 + HTTP/2 server on an ephemeral port that names itself,
//!   counts requests, echoes what it received, and misbehaves on cue ([`Behaviour`]);
//! - [`Weft`]: a launcher for the built `weft` binary with a config written to a tempdir,
//!   which waits for the `listening` line and for `/ready`, captures stderr, sends signals
//!   and kills the process on drop;
//! - [`Client`]: HTTP/1 and HTTP/2 (prior knowledge) clients that always dial one address,
//!   whatever the request's authority, plus raw-socket helpers ([`raw`]);
//! - [`Http1App`]: an application that speaks HTTP/1.1 only and can close idle keep-alive
//!   connections as Node and Go servers do; [`Nginx`]: a real nginx as a child process;
//! - [`Etcd`]: a real etcd, one member or a cluster on loopback, killed and restarted on cue;
//! - [`Named`]: a real DNS server (BIND 9) for the zone `weft.test`, updated live;
//! - [`broken`]: clients that break their request bodies midway, on cue;
//! - [`fake_k8s`]: a fake Kubernetes API server (EndpointSlice list and watch);
//! - [`Disco`]: a directory for the `fs` namer with atomic and non-atomic writes;
//! - [`consul::FakeConsul`]: a Consul agent's HTTP API (blocking queries included), as
//!   documented, for the consul namer;
//! - [`marathon`]: a fake Marathon REST API (apps with tasks, the event stream) for the
//!   `marathon` namer;
//! - [`metrics`]: fetching and reading the Prometheus text of the admin server;
//! - [`tap`]: a live tap on the admin server, its events grouped by request;
//! - [`tunnel`]: CONNECT tunnels over raw sockets;
//! - [`ControlStub`]: the control plane's resolution service in process, for proxies with
//!   `interpreter: {kind: control}`.
//!
//! No fixed ports, no sleeps to wait for readiness: everything binds port 0 and polls.

pub mod broken;
mod client;
pub mod consul;
mod control;
mod disco;
mod etcd;
pub mod fake_k8s;
mod http1_app;
pub mod marathon;
pub mod metrics;
mod named;
mod nginx;
pub mod raw;
pub mod scripted;
mod serve;
pub mod tap;
pub mod tunnel;
mod upstream;
mod weft;

pub use client::{Client, ClientError, FixedConnector, TestBody, TestResponse};
pub use control::ControlStub;
pub use disco::Disco;
pub use etcd::Etcd;
pub use http1_app::{Http1App, APP_VERSION_HEADER};
pub use metrics::get_metrics;
pub use named::Named;
pub use nginx::Nginx;
pub use upstream::{closed_port, Behaviour, Echo, Upstream, DELAY_HEADER, ECHO_HEADER};
pub use weft::{Exited, Signal, Weft};

/// The boxed error type used by bodies in this crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
