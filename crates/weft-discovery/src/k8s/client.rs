//! The Kubernetes client: where its configuration comes from, and the caps on what it reads
//! (a whole list response; each event of a watch).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Limited};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use weft_config::K8sApi;
use weft_naming::NamerStatus;

/// The largest list response read (16 MiB); a larger one is a failed list. The same bound
/// applies to each event of a watch (one line of its newline-delimited JSON, which kube-rs
/// buffers whole): a watch stream is long-lived, so only its events are bounded, each
/// independently. An event can never rightly be larger than a list holding its object.
pub(super) const MAX_BODY: usize = 16 << 20;

/// A watch event (one line of the stream) longer than the cap: the watch is abandoned.
#[derive(Debug)]
pub(super) struct EventTooLarge {
    limit: usize,
}

/// Where the client's configuration comes from, found at start.
pub(super) enum ClientSource {
    Ready(Box<kube::Config>),
    Kubeconfig(Box<Kubeconfig>, KubeConfigOptions),
}

/// Builds the client: the configuration from `source` (a kubeconfig is turned into one
/// here, inside the runtime), list responses and each watch event capped at `body_limit`
/// bytes.
pub(super) async fn build(
    source: &ClientSource,
    body_limit: usize,
    status: &NamerStatus,
) -> Result<kube::Client, String> {
    let config = match source {
        ClientSource::Ready(c) => (**c).clone(),
        ClientSource::Kubeconfig(kc, options) => {
            kube::Config::from_custom_kubeconfig((**kc).clone(), options)
                .await
                .map_err(|e| format!("kubeconfig: {e}"))?
        }
    };
    let builder =
        ClientBuilder::try_from(config).map_err(|e| format!("cannot create the client: {e}"))?;
    let cap = tower::layer::layer_fn(|inner| CapBodies {
        inner,
        limit: body_limit,
        status: status.clone(),
    });
    Ok(builder.with_layer(&cap).build())
}

/// Finds the client configuration (see [`K8sNamer::new`]); also the backend's description.
pub(super) fn client_source(api: &K8sApi) -> Result<(ClientSource, String), String> {
    if let Some(url) = &api.url {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "url {url:?}: expected http://host:port or https://host:port"
            ));
        }
        return Ok((
            ClientSource::Ready(Box::new(kube::Config::new(uri))),
            url.clone(),
        ));
    }
    let options = KubeConfigOptions {
        context: api.context.clone(),
        ..KubeConfigOptions::default()
    };
    let context = api
        .context
        .as_deref()
        .map_or(String::new(), |c| format!(" (context {c})"));
    if let Some(path) = &api.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
        let backend = format!("kubeconfig {}{context}", path.display());
        return Ok((ClientSource::Kubeconfig(Box::new(kc), options), backend));
    }
    if api.context.is_none() {
        match kube::Config::incluster() {
            Ok(c) => {
                let backend = format!("{} (in-cluster service account)", c.cluster_url);
                return Ok((ClientSource::Ready(Box::new(c)), backend));
            }
            Err(incluster) => match Kubeconfig::read() {
                Ok(kc) => {
                    return Ok((
                        ClientSource::Kubeconfig(Box::new(kc), options),
                        "kubeconfig ($KUBECONFIG or ~/.kube/config)".to_string(),
                    ))
                }
                Err(file) => {
                    return Err(format!(
                        "no Kubernetes API configuration: tried the in-cluster service account \
                         ({incluster}) and $KUBECONFIG / ~/.kube/config ({file}); set `url` or \
                         `kubeconfig`"
                    ))
                }
            },
        }
    }
    let kc = Kubeconfig::read().map_err(|e| {
        format!("cannot read $KUBECONFIG / ~/.kube/config for context {context}: {e}")
    })?;
    let backend = format!("kubeconfig ($KUBECONFIG or ~/.kube/config){context}");
    Ok((ClientSource::Kubeconfig(Box::new(kc), options), backend))
}

/// Caps response bodies: a whole body for requests that are not watches, each line (event)
/// for watches. A watch the API server accepts (status 2xx) is also news for the namer's
/// status: the backend is reachable again, though a quiet watch may bring no event for
/// minutes (kube's watcher resumes a watch without telling).
struct CapBodies<S> {
    inner: S,
    limit: usize,
    status: NamerStatus,
}

impl<S, B> tower::Service<Request<Body>> for CapBodies<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<Either<EventLimited<B>, Limited<B>>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let watch = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let limit = self.limit;
        let status = self.status.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if watch && response.status().is_success() {
                status.heard();
            }
            Ok(response.map(|body| {
                if watch {
                    Either::Left(EventLimited {
                        inner: Box::pin(body),
                        limit,
                        run: 0,
                    })
                } else {
                    Either::Right(Limited::new(body, limit))
                }
            }))
        })
    }
}

/// A watch response body whose lines (events) may not exceed `limit` bytes: the frame that
/// would make one longer is an [`EventTooLarge`] error instead, so the event is never
/// buffered whole.
pub(super) struct EventLimited<B> {
    inner: Pin<Box<B>>,
    limit: usize,
    /// Bytes of the current line so far.
    run: usize,
}

impl<B> HttpBody for EventLimited<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tower::BoxError>>> {
        let this = self.get_mut();
        let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            match line_run(this.run, data, this.limit) {
                Some(run) => this.run = run,
                None => {
                    let e = EventTooLarge { limit: this.limit };
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The length of the unfinished line after `data`, given `run` bytes of it before; `None`
/// when a line (not counting its `\n`) is longer than `limit`.
fn line_run(run: usize, data: &[u8], limit: usize) -> Option<usize> {
    let mut pieces = data.split(|&b| b == b'\n');
    let mut run = run.saturating_add(pieces.next().map_or(0, <[u8]>::len));
    for piece in pieces {
        if run > limit {
            return None;
        }
        run = piece.len();
    }
    (run <= limit).then_some(run)
}

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a watch event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for EventTooLarge {}

/// Whether `e`, or an error it was caused by, is an [`EventTooLarge`]. An `io::Error` hides
/// its inner error from `source()`, so it is looked into explicitly.
pub(super) fn is_event_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<EventTooLarge>() {
            return true;
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|e| e as &(dyn std::error::Error + 'static));
        next = inner.or_else(|| err.source());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_run_bounds_every_line_across_frames() {
        assert_eq!(line_run(0, b"abc", 4), Some(3));
        assert_eq!(line_run(3, b"d", 4), Some(4));
        assert_eq!(line_run(4, b"e", 4), None, "a line grows past the cap");
        assert_eq!(
            line_run(4, b"\nab", 4),
            Some(2),
            "a line of exactly the cap"
        );
        assert_eq!(
            line_run(0, b"ab\nabcde\nab", 4),
            None,
            "a long line in the middle"
        );
        assert_eq!(line_run(0, b"ab\nabcd\n", 4), Some(0));
        assert_eq!(
            line_run(2, b"abc\n", 4),
            None,
            "the first line continues one before"
        );
    }

    #[test]
    fn an_oversized_event_is_found_inside_io_errors() {
        let e = EventTooLarge { limit: 1 };
        let kube = kube::Error::Service(Box::new(e));
        let io = std::io::Error::other(kube);
        let outer = kube::Error::ReadEvents(io);
        assert!(is_event_too_large(&outer));
        let other = kube::Error::ReadEvents(std::io::Error::other("reset"));
        assert!(!is_event_too_large(&other));
    }
}
