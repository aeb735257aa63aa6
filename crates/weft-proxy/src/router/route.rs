//! Routes: which route of a service profile a request takes (the first whose match fits),
//! and what that route decides: its name for metrics, its timeout, its response classifier,
//! and which client identities may use it. Requests matching no route take the service's
//! defaults under the route name `[default]`.

use std::time::Duration;

use http::Method;
use weft_config::ServiceConfig;
use weft_naming::Path;

use crate::dispatch::Classifier;
use crate::error::{ErrorKind, ProxyError};

use crate::clients::DEFAULT_ROUTE;

/// What a matched route decides for one request.
pub(crate) struct Route<'a> {
    pub(crate) name: &'a str,
    /// Client identities allowed on this route, if it restricts them.
    authorized: Option<&'a [String]>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) classifier: Classifier,
}

/// The route of a request to `name` with `method` and `path`: the first matching route of
/// the service's profile, else the service defaults under the route name `[default]`.
pub(crate) fn find<'a>(
    service: &'a ServiceConfig,
    name: &Path,
    method: &Method,
    path: &str,
) -> Route<'a> {
    let matched = service
        .profile_for(name)
        .and_then(|p| p.routes.iter().find(|r| r.matcher.matches(method, path)));
    match matched {
        Some(r) => Route {
            name: &r.name,
            authorized: r.authorized_clients.as_deref(),
            timeout: r.timeout,
            classifier: Classifier {
                classifier: r
                    .response_classifier
                    .clone()
                    .unwrap_or_else(|| service.response_classifier.clone()),
                route_retryable: r.is_retryable,
            },
        },
        None => Route {
            name: DEFAULT_ROUTE,
            authorized: None,
            timeout: None,
            classifier: Classifier {
                classifier: service.response_classifier.clone(),
                route_retryable: false,
            },
        },
    }
}

impl Route<'_> {
    /// Checks that `client` (a SPIFFE ID; `None` for plaintext) may use this route.
    ///
    /// # Errors
    /// `unauthorized` (403) naming the client and the route.
    pub(crate) fn authorize(&self, client: Option<&str>) -> Result<(), ProxyError> {
        let Some(allowed) = self.authorized else {
            return Ok(());
        };
        let ok = client.is_some_and(|id| {
            allowed.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => id == p,
            })
        });
        if ok {
            return Ok(());
        }
        let who = client.unwrap_or("a plaintext client");
        Err(ProxyError::new(
            ErrorKind::Unauthorized,
            format!("{who} may not use route {}", self.name),
        ))
    }
}
