//! `weft_connection_errors_total`: client connections that ended in an error, by protocol and
//! reason. Most are clients going away; the rest are refusals of bad input (a malformed or
//! oversized HTTP/1.1 head, an HTTP/2 flood ended with GOAWAY), which is what an attack looks
//! like from here.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Labels {
    router: Arc<str>,
    protocol: &'static str,
    reason: &'static str,
}

/// The counter family, shared by every router.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionErrors(Family<Labels, Counter>);

impl ConnectionErrors {
    pub(crate) fn register(registry: &mut Registry) -> ConnectionErrors {
        let family = ConnectionErrors::default();
        registry.register(
            "connection_errors",
            "Client connections that ended in an error, by protocol (http1, http2) and reason (see docs/metrics.md)",
            family.0.clone(),
        );
        family
    }

    pub(crate) fn inc(&self, router: &Arc<str>, protocol: &'static str, reason: &'static str) {
        let labels = Labels {
            router: router.clone(),
            protocol,
            reason,
        };
        self.0.get_or_create(&labels).inc();
    }
}
