//! Serving a fake backend (Consul, Marathon): HTTP/1.1 connections accepted on a listener,
//! every request handed to one handler with the fake's shared state.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Accepts connections until the task is aborted; the connections are owned here, so
/// aborting this task closes every one of them (a fake backend "going away").
pub(crate) async fn accept_loop<S, F, Fut, B>(listener: TcpListener, state: S, handle: F)
where
    S: Clone + Send + Sync + 'static,
    F: Fn(Request<Incoming>, S) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
