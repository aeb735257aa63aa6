//! Validation of `service`: timeouts, retries, classifiers and service profiles.

use std::collections::HashMap;
use std::time::Duration;

use super::{dur, invalid, min_max, not_for_kind, Result};
use crate::locate::KeyPath;
use crate::raw::*;
use crate::values::Dur;
use crate::*;

pub(super) fn service(raw: RawService, p: &KeyPath) -> Result<ServiceConfig> {
    let retries = raw.retries.unwrap_or_default();
    let rp = p.key("retries");
    let response_classifier = match raw.response_classifier {
        None => ResponseClassifier::default(),
        Some(c) => classifier(c, &p.key("responseClassifier"))?,
    };
    let mut profiles = Vec::new();
    let mut prefixes = HashMap::new();
    for (i, raw) in raw.profiles.unwrap_or_default().into_iter().enumerate() {
        let pp = p.key("profiles").index(i);
        let profile = profile(raw, &response_classifier, &pp)?;
        if let Some(first) = prefixes.insert(profile.prefix.clone(), i) {
            return invalid(
                &pp.key("prefix"),
                format!(
                    "duplicate profile prefix {}: already used by profiles[{first}]",
                    profile.prefix
                ),
            );
        }
        profiles.push(profile);
    }
    Ok(ServiceConfig {
        total_timeout: opt_timeout(raw.total_timeout, &p.key("totalTimeout"))?,
        attempt_timeout: opt_timeout(raw.attempt_timeout, &p.key("attemptTimeout"))?,
        retries: RetriesConfig {
            budget: budget(retries.budget.unwrap_or_default(), &rp.key("budget"))?,
            backoff: retry_backoff(retries.backoff, &rp.key("backoff"))?,
            buffer_bytes: retries
                .buffer_bytes
                .unwrap_or(RetriesConfig::DEFAULT_BUFFER_BYTES),
        },
        response_classifier,
        profiles,
        objectives: super::objective::objectives(raw.objectives, &p.key("objectives"))?,
    })
}

/// An optional timeout: absent is none, zero is an error.
fn opt_timeout(raw: Option<Dur>, p: &KeyPath) -> Result<Option<Duration>> {
    match raw {
        Some(d) if d.0.is_zero() => {
            invalid(p, "must be greater than zero (leave it out for no timeout)")
        }
        d => Ok(d.map(|d| d.0)),
    }
}

/// A retry budget (`service.retries.budget`, `client.requeueBudget`).
pub(super) fn budget(raw: RawBudget, p: &KeyPath) -> Result<RetryBudget> {
    let d = RetryBudget::default();
    let percent_can_retry = raw.percent_can_retry.unwrap_or(d.percent_can_retry);
    if !(0.0..=1.0).contains(&percent_can_retry) {
        return invalid(
            &p.key("percentCanRetry"),
            format!("percentCanRetry {percent_can_retry} out of range: expected a fraction from 0.0 to 1.0"),
        );
    }
    Ok(RetryBudget {
        percent_can_retry,
        min_retries_per_sec: raw.min_retries_per_sec.unwrap_or(d.min_retries_per_sec),
        ttl: dur(raw.ttl, d.ttl, true, &p.key("ttl"))?,
    })
}

fn retry_backoff(raw: Option<RawRetryBackoff>, p: &KeyPath) -> Result<RetryBackoff> {
    let Some(raw) = raw else {
        return Ok(RetryBackoff::default());
    };
    match raw.kind {
        None => invalid(
            &p.key("kind"),
            "missing `kind`: expected `constant` or `jittered`",
        ),
        Some(RetryBackoffKindName::Constant) => {
            for (key, present) in [("min", raw.min.is_some()), ("max", raw.max.is_some())] {
                if present {
                    return not_for_kind(&p.key(key), "constant");
                }
            }
            let Some(delay) = raw.delay else {
                return invalid(
                    &p.key("delay"),
                    "missing `delay`: the wait before each retry, like 10ms",
                );
            };
            Ok(RetryBackoff::Constant { delay: delay.0 })
        }
        Some(RetryBackoffKindName::Jittered) => {
            if raw.delay.is_some() {
                return not_for_kind(&p.key("delay"), "jittered");
            }
            let min = raw.min.map_or(RetryBackoff::DEFAULT_MIN, |d| d.0);
            let max = raw.max.map_or(RetryBackoff::DEFAULT_MAX, |d| d.0);
            min_max(min, max, p)?;
            Ok(RetryBackoff::Jittered { min, max })
        }
    }
}

fn classifier(raw: RawClassifier, p: &KeyPath) -> Result<ResponseClassifier> {
    let raw = match raw {
        RawClassifier::Named(c) => return Ok(c),
        RawClassifier::Kind(k) => k,
    };
    // `kind` can only be `grpc`: serde has rejected anything else.
    let Some(ClassifierKindName::Grpc) = raw.kind else {
        return invalid(
            &p.key("kind"),
            "missing `kind`: expected `grpc` (the other classifiers are written as plain names, like retryableRead5XX)",
        );
    };
    let Some(codes) = raw.retryable_status_codes else {
        return Ok(ResponseClassifier::grpc_default());
    };
    let cp = p.key("retryableStatusCodes");
    for (i, &code) in codes.iter().enumerate() {
        if code == 0 {
            return invalid(
                &cp.index(i),
                "gRPC status 0 (OK) is a success and cannot be retried",
            );
        }
        if code > 16 {
            return invalid(
                &cp.index(i),
                format!("gRPC status {code} out of range: expected 1 to 16"),
            );
        }
        if let Some(first) = codes[..i].iter().position(|&c| c == code) {
            return invalid(
                &cp.index(i),
                format!("duplicate gRPC status {code}: already at retryableStatusCodes[{first}]"),
            );
        }
    }
    Ok(ResponseClassifier::Grpc {
        retryable_status_codes: codes,
    })
}

/// `inherited` is the service's classifier, which routes without their own use.
fn profile(raw: RawProfile, inherited: &ResponseClassifier, p: &KeyPath) -> Result<ServiceProfile> {
    let Some(prefix) = raw.prefix else {
        return invalid(
            &p.key("prefix"),
            "missing `prefix`: the logical names this profile applies to, like /svc/books",
        );
    };
    let raw_routes = match raw.routes {
        Some(r) if !r.is_empty() => r,
        _ => {
            return invalid(
                &p.key("routes"),
                "no routes: a profile needs at least one route, like [{name: list, match: {pathPrefix: /books}}]",
            )
        }
    };
    let mut routes = Vec::new();
    let mut names = HashMap::new();
    for (i, raw) in raw_routes.into_iter().enumerate() {
        let rp = p.key("routes").index(i);
        let route = route(raw, inherited, &rp)?;
        if let Some(first) = names.insert(route.name.clone(), i) {
            return invalid(
                &rp.key("name"),
                format!(
                    "duplicate route name \"{}\": already used by routes[{first}]",
                    route.name
                ),
            );
        }
        routes.push(route);
    }
    Ok(ServiceProfile {
        prefix: prefix.0,
        routes,
    })
}

fn route(raw: RawRoute, inherited: &ResponseClassifier, p: &KeyPath) -> Result<RouteConfig> {
    let Some(name) = raw.name else {
        return invalid(
            &p.key("name"),
            "missing `name`: every route needs a name, unique within its profile",
        );
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/ ".contains(c))
    {
        return invalid(
            &p.key("name"),
            format!("invalid route name \"{name}\": expected letters, digits, '.', '_', '-', '/' or spaces"),
        );
    }
    let Some(matcher) = raw.matcher else {
        return invalid(
            &p.key("match"),
            "missing `match`: which requests the route applies to, like {method: GET, pathPrefix: /books}",
        );
    };
    let matcher = route_match(matcher, &p.key("match"))?;
    let timeout = opt_timeout(raw.timeout, &p.key("timeout"))?;
    let response_classifier = match raw.response_classifier {
        None => None,
        Some(c) => Some(classifier(c, &p.key("responseClassifier"))?),
    };
    let is_retryable = raw.is_retryable.unwrap_or(false);
    let effective = response_classifier.as_ref().unwrap_or(inherited);
    if is_retryable && !retries_any(effective) {
        let name = effective.name().unwrap_or_default();
        return invalid(
            &p.key("isRetryable"),
            format!("isRetryable has no effect: the route's response classifier {name} never retries; give the route (or the service) a classifier that retries, like responseClassifier: retryableAll5XX"),
        );
    }
    let authorized_clients = match raw.authorized_clients {
        Some(ids) => {
            for (i, id) in ids.iter().enumerate() {
                if !id.starts_with("spiffe://") {
                    return invalid(
                        &p.key("authorizedClients").index(i),
                        format!("{id:?} is not a SPIFFE ID (spiffe://<trust-domain>/...), nor a prefix of one ending in *"),
                    );
                }
            }
            Some(ids)
        }
        None => None,
    };
    Ok(RouteConfig {
        name,
        matcher,
        timeout,
        is_retryable,
        response_classifier,
        authorized_clients,
    })
}

/// Whether a classifier retries anything at all (for some method).
fn retries_any(c: &ResponseClassifier) -> bool {
    !matches!(
        c,
        ResponseClassifier::NonRetryable5XX | ResponseClassifier::AllSuccessful
    )
}

fn route_match(raw: RawRouteMatch, p: &KeyPath) -> Result<RouteMatch> {
    let method = match raw.method {
        None => None,
        Some(m) => Some(method(&m, &p.key("method"))?),
    };

    let paths = [
        ("path", raw.path),
        ("pathPrefix", raw.path_prefix),
        ("pathRegex", raw.path_regex),
    ];
    let mut given = paths.into_iter().filter_map(|(k, v)| Some((k, v?)));
    let path_key = given.next();
    if let Some((second, _)) = given.next() {
        return invalid(
            &p.key(second),
            "only one of `path`, `pathPrefix` and `pathRegex` may be given",
        );
    }
    let path = match path_key {
        None => None,
        Some((key, value)) => {
            let kp = p.key(key);
            Some(match key {
                "pathRegex" => {
                    PathMatch::Regex(RouteRegex::compile(&value).or_else(|msg| invalid(&kp, msg))?)
                }
                _ if !value.starts_with('/') => {
                    return invalid(
                        &kp,
                        format!("invalid {key} \"{value}\": expected a URI path starting with /"),
                    )
                }
                "path" => PathMatch::Exact(value),
                _ => PathMatch::Prefix(value),
            })
        }
    };

    let grpc = match (raw.grpc_service, raw.grpc_method) {
        (None, None) => None,
        (None, Some(_)) => {
            return invalid(&p.key("grpcMethod"), "`grpcMethod` needs `grpcService`")
        }
        (Some(service), method) => {
            if let Some(key) = path_key_name(&path) {
                return invalid(
                    &p.key("grpcService"),
                    format!(
                        "`grpcService` cannot be combined with `{key}`: it matches the path itself"
                    ),
                );
            }
            grpc_name(&service, "grpcService", &p.key("grpcService"))?;
            if let Some(m) = &method {
                grpc_name(m, "grpcMethod", &p.key("grpcMethod"))?;
            }
            Some(GrpcMatch { service, method })
        }
    };

    if method.is_none() && path.is_none() && grpc.is_none() {
        return invalid(
            p,
            "empty match: give at least one of `method`, `path`, `pathPrefix`, `pathRegex`, `grpcService`",
        );
    }
    Ok(RouteMatch { method, path, grpc })
}

/// The yaml key a path condition came from.
fn path_key_name(path: &Option<PathMatch>) -> Option<&'static str> {
    path.as_ref().map(|p| match p {
        PathMatch::Exact(_) => "path",
        PathMatch::Prefix(_) => "pathPrefix",
        PathMatch::Regex(_) => "pathRegex",
    })
}

/// An HTTP method; case-sensitive (RFC 9110, section 9.1), so `get` is refused rather than
/// silently never matching.
fn method(s: &str, p: &KeyPath) -> Result<http::Method> {
    let Ok(m) = http::Method::from_bytes(s.as_bytes()) else {
        return invalid(
            p,
            format!("invalid method \"{s}\": expected an HTTP method like GET or POST"),
        );
    };
    let upper = s.to_ascii_uppercase();
    if upper != s {
        return invalid(
            p,
            format!("invalid method \"{s}\": methods are case-sensitive, write {upper}"),
        );
    }
    Ok(m)
}

/// A gRPC service or method name: not empty, no `/`, no whitespace.
fn grpc_name(s: &str, key: &str, p: &KeyPath) -> Result<()> {
    if s.is_empty() || s.contains('/') || s.chars().any(char::is_whitespace) {
        return invalid(
            p,
            format!("invalid {key} \"{s}\": expected a name without '/' or spaces, like books.v1.Library or GetBook"),
        );
    }
    Ok(())
}
