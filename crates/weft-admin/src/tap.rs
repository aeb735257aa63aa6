//! `GET /tap`: streams the tap events of matching requests as JSON lines until the client
//! disconnects (which closes the tap).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use weft_telemetry::tap::{TapFilter, TapSubscription};

/// Default and upper bound of requests per second one tap reports.
pub(crate) const DEFAULT_TAP_RPS: u32 = 100;
pub(crate) const MAX_TAP_RPS: u32 = 10_000;

/// Parses the tap filter from query parameters: `router`, `service`, `route`, `authority`,
/// `method`, `path` (a prefix), `status`, and `maxRps`. Errors name the bad parameter.
pub(crate) fn parse_query(query: &str) -> Result<(TapFilter, u32), String> {
    let mut filter = TapFilter::default();
    let mut max_rps = DEFAULT_TAP_RPS;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "router" => filter.router = Some(v),
            "service" => filter.service = Some(v),
            "route" => filter.route = Some(v),
            "authority" => filter.authority = Some(v),
            "method" => filter.method = Some(v),
            "path" => filter.path_prefix = Some(v),
            "status" => {
                let status: u16 = v
                    .parse()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| format!("status: {v:?} is not an HTTP status code"))?;
                filter.status = Some(status);
            }
            "maxRps" => {
                max_rps = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_TAP_RPS).contains(n))
                    .ok_or_else(|| {
                        format!("maxRps: {v:?} is not a number from 1 to {MAX_TAP_RPS}")
                    })?;
            }
            other => return Err(format!("unknown tap parameter {other:?}")),
        }
    }
    Ok((filter, max_rps))
}

/// The streaming response body of one tap.
pub(crate) struct TapBody {
    sub: TapSubscription,
}

impl TapBody {
    pub(crate) fn new(sub: TapSubscription) -> TapBody {
        TapBody { sub }
    }
}

impl Body for TapBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut().sub.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(event)) => {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_rejects_bad_ones() {
        let (f, rps) = parse_query("router=out&method=GET&path=/api&status=500&maxRps=5").unwrap();
        assert_eq!(f.router.as_deref(), Some("out"));
        assert_eq!(f.path_prefix.as_deref(), Some("/api"));
        assert_eq!(f.status, Some(500));
        assert_eq!(rps, 5);
        assert!(parse_query("status=abc").unwrap_err().contains("status"));
        assert!(parse_query("maxRps=0").unwrap_err().contains("maxRps"));
        assert!(parse_query("bogus=1").unwrap_err().contains("bogus"));
    }
}
