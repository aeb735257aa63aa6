//! Service profiles: per-route timeouts, retryability and classification for the logical
//! names under a prefix (yaml `service.profiles`).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::naming;
use crate::values::ser_opt_duration;
use crate::ResponseClassifier;

/// The routes of the logical services under `prefix` (yaml
/// `{prefix: /svc/books, routes: [...]}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceProfile {
    /// The logical names this profile applies to: every name that starts with it, by whole
    /// path segments (required). Unique among the profiles of a service; the longest
    /// matching prefix wins ([`crate::ServiceConfig::profile_for`]).
    pub prefix: naming::Path,
    /// The routes, in file order (at least one); names are unique. The first route that
    /// matches a request applies ([`ServiceProfile::route_for`]).
    pub routes: Vec<RouteConfig>,
}

impl ServiceProfile {
    /// The first route, in file order, that matches a request with `method` and URI `path`
    /// (without the query), or `None`.
    pub fn route_for(&self, method: &http::Method, path: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.matcher.matches(method, path))
    }
}

/// One route of a profile: which requests it matches and how they are treated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// The route's name (required): unique within the profile; letters, digits, `.`, `_`,
    /// `-`, `/` and spaces. Used as the `route` metrics label.
    pub name: String,
    /// Which requests this route matches (yaml `match`, required).
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Deadline for the whole request including retries (yaml `timeout`, a duration > 0);
    /// replaces the service's `totalTimeout`. Default: the service's.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Whether the route is safe to retry whatever its method (yaml `isRetryable`); default
    /// false. When true, a failure that the classifier calls retryable for some method is
    /// retried on this route too (a POST that is idempotent by design, say).
    pub is_retryable: bool,
    /// Replaces the service's `responseClassifier` for this route (yaml
    /// `responseClassifier`); default: the service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_classifier: Option<ResponseClassifier>,
    /// Client identities allowed on this route (yaml `authorizedClients`), on top of the
    /// router's `tls.authorizedClients`: SPIFFE IDs, exact or ending in `*`. Default: every
    /// client the router admits. Needs the router's `tls` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_clients: Option<Vec<String>>,
}

/// The conditions of a route (yaml `match`): all given conditions must hold, and at least one
/// is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The request method (yaml `method`, like `GET`; case-sensitive).
    pub method: Option<http::Method>,
    /// The URI path (yaml: one of `path`, `pathPrefix`, `pathRegex`).
    pub path: Option<PathMatch>,
    /// A gRPC service and method (yaml `grpcService`, `grpcMethod`); never together with
    /// `path`.
    pub grpc: Option<GrpcMatch>,
}

impl RouteMatch {
    /// Whether a request with `method` and URI `path` (without the query) meets every
    /// condition.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && self.grpc.as_ref().is_none_or(|g| g.matches(path))
    }
}

impl Serialize for RouteMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            method: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            path: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            path_prefix: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            path_regex: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            grpc_service: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            grpc_method: Option<&'a str>,
        }
        let (mut path, mut path_prefix, mut path_regex) = (None, None, None);
        match &self.path {
            Some(PathMatch::Exact(p)) => path = Some(p.as_str()),
            Some(PathMatch::Prefix(p)) => path_prefix = Some(p.as_str()),
            Some(PathMatch::Regex(r)) => path_regex = Some(r.as_str()),
            None => {}
        }
        Out {
            method: self.method.as_ref().map(http::Method::as_str),
            path,
            path_prefix,
            path_regex,
            grpc_service: self.grpc.as_ref().map(|g| g.service.as_str()),
            grpc_method: self.grpc.as_ref().and_then(|g| g.method.as_deref()),
        }
        .serialize(s)
    }
}

/// A condition on the URI path (without the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// yaml `path`: the path is exactly this (starts with `/`).
    Exact(String),
    /// yaml `pathPrefix`: the path starts with this string (starts with `/`). A plain string
    /// prefix: `/api` also matches `/apis`; write `/api/` for the segment.
    Prefix(String),
    /// yaml `pathRegex`: the whole path matches this regular expression.
    Regex(RouteRegex),
}

impl PathMatch {
    /// Whether `path` meets the condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// A regular expression (Rust `regex` syntax) that must match a whole path: compiled as
/// `^(?:<pattern>)$`. Compares, prints and serializes as the pattern as written.
#[derive(Clone)]
pub struct RouteRegex {
    pattern: String,
    regex: regex::Regex,
}

impl RouteRegex {
    /// Compiles `pattern`, anchored at both ends.
    ///
    /// # Errors
    /// `pattern` is not a valid regular expression, or compiles too large; the message is one
    /// line, like `invalid pathRegex "/a(": unclosed group`.
    pub fn new(pattern: &str) -> Result<RouteRegex, crate::ConfigError> {
        Self::compile(pattern)
            .map_err(|msg| crate::ConfigError::invalid("pathRegex", None, None, msg))
    }

    /// As [`RouteRegex::new`], with the error as the bare message.
    pub(crate) fn compile(pattern: &str) -> Result<RouteRegex, String> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            // The syntax error is several lines (the pattern, a caret line, then `error: ..`);
            // keep the last line, which says what is wrong.
            let shown = e.to_string();
            let last = shown.lines().last().unwrap_or_default().trim();
            let what = last.strip_prefix("error: ").unwrap_or(last);
            format!("invalid pathRegex \"{pattern}\": {what}")
        })?;
        Ok(RouteRegex {
            pattern: pattern.to_owned(),
            regex,
        })
    }

    /// Whether the whole of `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    /// The pattern as written in the file (not anchored).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Debug for RouteRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteRegex").field(&self.pattern).finish()
    }
}

impl PartialEq for RouteRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for RouteRegex {}

impl Serialize for RouteRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

/// A gRPC service and optional method: matches the request path `/<service>/<method>`, or
/// every path under `/<service>/` without a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrpcMatch {
    /// The fully qualified service, like `books.v1.Library` (yaml `grpcService`); no `/`.
    pub service: String,
    /// The method, like `GetBook` (yaml `grpcMethod`); no `/`. `None`: every method.
    pub method: Option<String>,
}

impl GrpcMatch {
    /// Whether the request `path` calls this service (and method).
    pub fn matches(&self, path: &str) -> bool {
        let rest = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.service.as_str()))
            .and_then(|p| p.strip_prefix('/'));
        match (rest, &self.method) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(m), Some(want)) => m == want,
        }
    }
}
