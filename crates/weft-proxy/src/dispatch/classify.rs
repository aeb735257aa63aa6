//! Response classification: is an exchange a success or a failure, and may a failure be
//! retried? The classifier names and method sets follow Linkerd 1's `io.l5d.http.*`
//! classifiers; idempotent methods are those of RFC 9110 section 9.2.2.

use http::{HeaderMap, Method, StatusCode};
use weft_config::ResponseClassifier;

/// The verdict on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counts as a success.
    Success,
    /// Counts as a failure; `retryable` if sending the request again is allowed.
    Failure {
        /// The request may be sent again.
        retryable: bool,
    },
}

impl Verdict {
    pub(crate) fn is_success(self) -> bool {
        matches!(self, Verdict::Success)
    }
}

/// What decides retries for one request: its route's classifier and whether the route is
/// marked retryable whatever the method.
#[derive(Clone, Debug)]
pub(crate) struct Classifier {
    pub(crate) classifier: ResponseClassifier,
    pub(crate) route_retryable: bool,
}

impl Classifier {
    /// Classifies a response head. gRPC responses that carry `grpc-status` in their headers
    /// (trailers-only, RFC: gRPC over HTTP/2 "Responses") are classified by it; other gRPC
    /// responses are decided at their trailers by [`Classifier::trailers`].
    pub(crate) fn response(
        &self,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Verdict {
        if let Some(code) = grpc_status(headers) {
            return self.grpc(code);
        }
        if matches!(self.classifier, ResponseClassifier::AllSuccessful) || !status.is_server_error()
        {
            return Verdict::Success;
        }
        Verdict::Failure {
            retryable: self.method_may_retry(method),
        }
    }

    /// Classifies a stream's trailers (gRPC: `grpc-status`). `None` when they say nothing.
    pub(crate) fn trailers(&self, trailers: &HeaderMap) -> Option<Verdict> {
        grpc_status(trailers).map(|code| self.grpc(code))
    }

    /// Whether a failure without a response (reset, protocol error, attempt timeout) may be
    /// retried: like a 5xx for this method.
    pub(crate) fn error_may_retry(&self, method: &Method) -> bool {
        self.method_may_retry(method)
    }

    /// Whether `method` may be sent twice with the effect of once: the idempotent methods of
    /// RFC 9110 section 9.2.2, or any method on a route marked `isRetryable`. Decides whether
    /// a request that a stale connection may have written goes again.
    pub(crate) fn is_idempotent(&self, method: &Method) -> bool {
        self.route_retryable
            || [
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::TRACE,
                Method::PUT,
                Method::DELETE,
            ]
            .contains(method)
    }

    fn grpc(&self, code: u32) -> Verdict {
        if code == 0 {
            return Verdict::Success;
        }
        let retryable = match &self.classifier {
            ResponseClassifier::Grpc {
                retryable_status_codes,
            } => retryable_status_codes.contains(&code),
            _ => false,
        } || self.route_retryable;
        Verdict::Failure { retryable }
    }

    fn method_may_retry(&self, method: &Method) -> bool {
        if self.route_retryable {
            return true;
        }
        let read = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method);
        match &self.classifier {
            ResponseClassifier::NonRetryable5XX
            | ResponseClassifier::AllSuccessful
            | ResponseClassifier::Grpc { .. } => false,
            ResponseClassifier::RetryableRead5XX => read,
            ResponseClassifier::RetryableIdempotent5XX => {
                read || method == Method::PUT || method == Method::DELETE
            }
            ResponseClassifier::RetryableAll5XX => true,
        }
    }
}

/// The `grpc-status` code in `headers`, if present and numeric.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    // A constant name: a `&str` key is parsed and validated on every lookup.
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    headers.get(GRPC_STATUS)?.to_str().ok()?.trim().parse().ok()
}

/// True for gRPC messages (`content-type: application/grpc[+proto|...]`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(classifier: ResponseClassifier) -> Classifier {
        Classifier {
            classifier,
            route_retryable: false,
        }
    }

    #[test]
    fn read_classifier_retries_only_safe_methods() {
        let k = c(ResponseClassifier::RetryableRead5XX);
        let h = HeaderMap::new();
        assert_eq!(
            k.response(&Method::GET, StatusCode::SERVICE_UNAVAILABLE, &h),
            Verdict::Failure { retryable: true }
        );
        assert_eq!(
            k.response(&Method::POST, StatusCode::SERVICE_UNAVAILABLE, &h),
            Verdict::Failure { retryable: false }
        );
        assert_eq!(
            k.response(&Method::POST, StatusCode::NOT_FOUND, &h),
            Verdict::Success
        );
    }

    #[test]
    fn idempotent_adds_put_and_delete_and_all_adds_post() {
        let k = c(ResponseClassifier::RetryableIdempotent5XX);
        assert!(k.error_may_retry(&Method::PUT));
        assert!(!k.error_may_retry(&Method::POST));
        assert!(c(ResponseClassifier::RetryableAll5XX).error_may_retry(&Method::POST));
        assert!(!c(ResponseClassifier::NonRetryable5XX).error_may_retry(&Method::GET));
    }

    #[test]
    fn idempotent_methods_are_rfc_9110s_whatever_the_classifier() {
        let k = c(ResponseClassifier::NonRetryable5XX);
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(k.is_idempotent(&m.parse().unwrap()), "{m}");
        }
        assert!(!k.is_idempotent(&Method::POST));
        assert!(!k.is_idempotent(&Method::PATCH));
    }

    #[test]
    fn route_marked_retryable_retries_any_method() {
        let k = Classifier {
            classifier: ResponseClassifier::NonRetryable5XX,
            route_retryable: true,
        };
        assert!(k.error_may_retry(&Method::POST));
    }

    #[test]
    fn grpc_trailers_only_unavailable_is_retryable() {
        let k = c(ResponseClassifier::Grpc {
            retryable_status_codes: vec![14],
        });
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(
            k.response(&Method::POST, StatusCode::OK, &h),
            Verdict::Failure { retryable: true }
        );
        h.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(k.trailers(&h), Some(Verdict::Failure { retryable: false }));
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(k.trailers(&h), Some(Verdict::Success));
    }
}
