//! The Kubernetes client: where its configuration comes from, and a cap on list responses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::{Either, Limited};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use weft_config::K8sApi;

/// The largest list response read (16 MiB); a larger one is a failed list. Watch streams are
/// long-lived and not capped here (kube-rs reads each event line whole).
pub(super) const MAX_BODY: usize = 16 << 20;

/// Where the client's configuration comes from, found at start.
pub(super) enum ClientSource {
    Ready(Box<kube::Config>),
    Kubeconfig(Box<Kubeconfig>, KubeConfigOptions),
}

/// Builds the client: the configuration from `source` (a kubeconfig is turned into one
/// here, inside the runtime), list responses capped at `body_limit` bytes.
pub(super) async fn build(
    source: &ClientSource,
    body_limit: usize,
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
    let cap = tower::layer::layer_fn(|inner| CapLists {
        inner,
        limit: body_limit,
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

/// Caps the response bodies of requests that are not watches.
struct CapLists<S> {
    inner: S,
    limit: usize,
}

impl<S, B> tower::Service<Request<Body>> for CapLists<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<Either<B, Limited<B>>>;
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
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                if watch {
                    Either::Left(body)
                } else {
                    Either::Right(Limited::new(body, limit))
                }
            }))
        })
    }
}
